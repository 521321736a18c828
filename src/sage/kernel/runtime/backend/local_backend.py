"""The embedded backend: every task and service instance is a thread of this process."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from ...errors import PipelineError
from ..communication.queue_descriptor import BaseQueueDescriptor, PythonQueueDescriptor
from ..context import ServiceContext, TaskContext
from ..graph import ExecutionGraph, ServiceNode, TaskNode
from ..graph.execution_graph import QueueFactory
from ..service.service_task import ServiceTask
from ..spec import JobSpec
from ..task import Task
from .base import ExitCallback


def python_queue_factory(queue_id: str, maxsize: int, owner: str) -> BaseQueueDescriptor:
    return PythonQueueDescriptor(maxsize=maxsize, queue_id=queue_id)


class LocalHandle:
    """A task or service running on its own thread; `stop`, `cancel` and `metrics` act on it directly."""

    def __init__(self, task: Task | ServiceTask, on_exit: ExitCallback) -> None:
        self.task = task
        self.name = task.name
        self._on_exit = on_exit
        self.thread = threading.Thread(target=self._run, name=f"sage-{task.name}", daemon=True)

    def _run(self) -> None:
        try:
            status = self.task.run()
        except BaseException as exc:  # reported, not lost: the dispatcher fails the job with it
            self._on_exit(self.name, "failed", exc)
            return
        self._on_exit(self.name, status, None)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.task.stop()

    def cancel(self) -> None:
        self.task.cancel()

    def metrics(self) -> dict[str, Any]:
        return self.task.metrics()

    def routing_info(self) -> dict[str, Any]:
        ctx = self.task.ctx
        return ctx.get_routing_info() if isinstance(ctx, TaskContext) else {}

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        if isinstance(self.task, Task):  # services take no part in checkpoints
            self.task.trigger_checkpoint(checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if isinstance(self.task, Task):
            self.task.notify_checkpoint_complete(checkpoint_id)


class LocalBackend:
    """Runs instances as daemon threads.

    Transports: "python" (default) links them with in-process queues; "rpc"
    hosts every queue of the job on one `RPCQueueServer` of this process
    (127.0.0.1, a random per-job key), which other processes can reach with
    the job's descriptors while tasks here read without a network hop.
    """

    name = "local"
    default_transport = "python"

    def __init__(self, spec: JobSpec | None = None) -> None:
        self._rpc_server: Any = None
        self._queues: list[BaseQueueDescriptor] = []
        self._lock = threading.Lock()

    def queue_factory(self, transport: str) -> QueueFactory:
        """The descriptor factory for `transport`; raises `PipelineError` for one this backend lacks."""
        if transport == "python":
            return python_queue_factory
        if transport == "rpc":
            return self._rpc_queue
        raise PipelineError(f"the local backend does not support transport {transport!r}")

    def _rpc_queue(self, queue_id: str, maxsize: int, owner: str) -> BaseQueueDescriptor:
        with self._lock:
            if self._rpc_server is None:
                from ..communication.rpc import RPCQueueServer

                self._rpc_server = RPCQueueServer("127.0.0.1", 0, authkey=secrets.token_bytes(32)).start()
            descriptor: BaseQueueDescriptor = self._rpc_server.create_queue(queue_id, maxsize)
            return descriptor

    def prepare(self, graph: ExecutionGraph) -> None:
        """Remember the job's queues, to release them at shutdown; nothing needs placing."""
        self._queues = graph.queues()

    def start_task(self, node: TaskNode, ctx: TaskContext, on_exit: ExitCallback) -> LocalHandle:
        """Run the task on a new thread; `on_exit` is called from that thread when it ends."""
        handle = LocalHandle(Task(ctx, node.spec), on_exit)
        handle.start()
        return handle

    def start_service(self, node: ServiceNode, ctx: ServiceContext, on_exit: ExitCallback) -> LocalHandle:
        """Run the service on a new thread (plus `max_concurrency - 1` worker threads)."""
        assert node.service_class is not None, "a pipeline service runs as tasks, not as a service instance"
        handle = LocalHandle(ServiceTask(ctx, node.service_class, node.args, node.kwargs),
                             lambda name, status, error: on_exit(node.name, status, error))
        handle.start()
        return handle

    def shutdown(self) -> None:
        """Release the job's queues (in-process registry entries, the RPC server if any).

        Threads end with their tasks; ones still running keep the queue objects
        they hold, so nothing they touch disappears under them.
        """
        with self._lock:
            server, self._rpc_server = self._rpc_server, None
            queues, self._queues = self._queues, []
        for descriptor in queues:
            if isinstance(descriptor, PythonQueueDescriptor):
                descriptor.close()
        if server is not None:
            server.stop()
