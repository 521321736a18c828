"""Dispatcher: starts one attempt of a job's instances on a backend and tracks their ends."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from ..errors import describe_error
from .backend import Backend, InstanceHandle
from .checkpoint import CheckpointCoordinator, RestoredCheckpoint
from .checkpoint.control import ControlReader
from .checkpoint.messages import FinalPart, SnapshotPart
from .collect import DriverReader
from .config import JobConfig
from .context import ServiceContext, TaskContext
from .graph import ExecutionGraph, TaskNode
from .graph.transformation import DRIVER
from .job import JobRun
from .service.pipeline_service import fill_credits

logger = logging.getLogger(__name__)

CHECKPOINT_CONTROL = "checkpoint control"
"""What a job names as the failed task when its checkpoint control failed (e.g. the store could not be written)."""


class AttemptEnd(Protocol):
    """Told once how an attempt ended: `(dispatcher, status, failed instance or None, error or None)`."""

    def __call__(self, dispatcher: Dispatcher, status: str, failed_task: str | None,
                 error: BaseException | None) -> None: ...


class Dispatcher:
    """Creates service and task instances with their contexts, starts them and watches them end.

    Every instance reports its end once, through a callback from the backend
    (no polling). The attempt's bounded part is its tasks outside service
    pipelines and the driver's readers of `collect` edges. When that part has
    finished, service pipelines (detached tasks) are stopped and drain, then
    the services are stopped, and the attempt finishes once they have exited:
    services never keep a bounded job alive. The first failure, of a task, a
    service or a reader, fails the attempt and cancels everything else.
    `on_end` hears how the attempt ended (the supervisor decides what the job
    does then).

    With checkpoints (`coordinator`), the tasks and readers of the bounded
    part are the checkpoint's participants, the sources among them inject the
    barriers, and the attempt's control queue is read into the coordinator.
    `restored` gives every task its state in the checkpoint the attempt starts
    from.
    """

    def __init__(self, job: JobRun, graph: ExecutionGraph, backend: Backend, config: JobConfig, *,
                 on_end: AttemptEnd, attempt: int = 0, restored: RestoredCheckpoint | None = None,
                 coordinator: CheckpointCoordinator | None = None) -> None:
        self.job = job
        self.graph = graph
        self.backend = backend
        self.config = config
        self.attempt = attempt
        self.restored = restored
        self.coordinator = coordinator
        self.tasks: dict[str, InstanceHandle] = {}
        self.services: dict[str, InstanceHandle] = {}
        self.readers: dict[str, DriverReader] = {}
        self._on_end = on_end
        self._ended = threading.Event()
        """Set once the attempt failed, was cancelled or finished: nothing more starts."""
        self._reported = False
        self._running_main: set[str] = set()
        self._running_services: set[str] = set()
        self._running_detached: set[str] = set()
        self._alive: set[str] = set()
        self._exited = threading.Event()
        self._control: ControlReader | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ contexts
    def task_context(self, name: str) -> TaskContext:
        node = self.graph.nodes[name]
        checkpointing = self.coordinator is not None and not node.detached
        restored = self.restored if checkpointing else None
        return TaskContext(node.name, node.basename, node.spec.kind, node.parallel_index, node.parallelism,
                           self.job.job_id, self.config, node.input_qd, node.downstream_groups,
                           node.upstream_names, self.graph.service_qds(), self.graph.service_methods(),
                           self.graph.response_qds[node.name], node.group_strategies,
                           control_qd=self.graph.control_qd if checkpointing else None,
                           restored_state=restored.parts.get(name) if restored is not None else None,
                           restored_checkpoint=restored.checkpoint_id if restored is not None else None,
                           loop=node.loop)

    def service_context(self, name: str) -> ServiceContext:
        node = self.graph.services[name]
        return ServiceContext(name, node.max_concurrency, self.job.job_id, self.config, node.request_qd,
                              self.graph.service_qds(), self.graph.service_methods(),
                              self.graph.response_qds[f"service:{name}"])

    # ------------------------------------------------------------------ start
    def submit(self) -> None:
        """Start every service, the driver's readers, the service pipelines, then the other tasks;
        returns once all are started.

        Requests that tasks send before a service's `setup()` is done wait in
        its request queue. Service pipelines start before the bounded tasks so
        that they are registered by the time those finish and stop them. If
        the attempt fails while instances are still being started, the rest
        are not started and the late ones are cancelled.
        """
        for node in self.graph.services.values():
            if node.credits_qd is not None:
                fill_credits(node.credits_qd, node.credits_qd.maxsize)
        readers = {f"{DRIVER}:{name}": driver for name, driver in self.graph.driver_queues.items()}
        with self._lock:
            self._running_services = {name for name, node in self.graph.services.items() if not node.pipeline}
            self._running_main = {name for name, node in self.graph.nodes.items() if not node.detached}
            self._running_main |= set(readers)
            self._running_detached = {name for name, node in self.graph.nodes.items() if node.detached}
            self._alive = {f"service:{name}" for name in self._running_services} | set(self.graph.nodes)
            self._alive |= set(readers)
        self._start_control()
        for name, node in self.graph.services.items():
            if not node.pipeline and not self._ended.is_set():
                self._register(self.services, name,
                               self.backend.start_service(node, self.service_context(name), self._on_service_exit))
        for name, driver in readers.items():
            reader = DriverReader(name, driver.queue, driver.upstream_names, self.job.results[driver.name],
                                  self._on_task_exit, self._reader_checkpoints(),
                                  self.restored.checkpoint_id if self.restored is not None else 0)
            with self._lock:
                self.readers[name] = reader
            reader.start()
        ordered = sorted(self.graph.nodes.items(), key=lambda item: not item[1].detached)
        for name, task_node in ordered:
            if self._ended.is_set():
                break
            self._register(self.tasks, name,
                           self.backend.start_task(task_node, self.task_context(name), self._on_task_exit))
        self._begin_checkpoints()
        if not self._running_main and not self._running_detached:
            self._stop_services()

    def _register(self, handles: dict[str, InstanceHandle], name: str, handle: InstanceHandle) -> None:
        with self._lock:
            handles[name] = handle
        if self._ended.is_set():  # it failed or was cancelled meanwhile: _cancel_all may not have seen this one
            self.cancel_all()

    # ------------------------------------------------------------------ checkpoints
    def _start_control(self) -> None:
        coordinator, control = self.coordinator, self.graph.control_qd
        if coordinator is None or control is None:
            return
        attempt = self.attempt
        coordinator.begin_attempt(attempt)
        self._control = ControlReader(self.job.job_id, control, lambda part: coordinator.on_part(attempt, part),
                                      lambda part: coordinator.on_final(attempt, part),
                                      lambda message: coordinator.on_end_of_input(attempt, message),
                                      self._control_failed)
        self._control.start()

    def _control_failed(self, error: BaseException) -> None:
        """The control queue's reader died (the store failed, or the queue): checkpoints can no longer
        complete and sources waiting for one would wait forever, so the attempt fails."""
        if not self._ended.is_set():
            self._fail(CHECKPOINT_CONTROL, error)

    def _reader_checkpoints(self) -> _AttemptParts | None:
        return None if self.coordinator is None else _AttemptParts(self.coordinator, self.attempt)

    def _begin_checkpoints(self) -> None:
        """Every instance of the bounded part is started: checkpoints may involve them now."""
        if self.coordinator is None or self._ended.is_set():
            return
        with self._lock:
            participants: dict[str, Any] = {name: handle for name, handle in self.tasks.items()
                                            if not self.graph.nodes[name].detached}
            participants.update(self.readers)
        # Sources inject barriers; so does a loop's entry once its inputs from outside have ended.
        injectors = [name for name in participants
                     if name in self.graph.nodes and _injects(self.graph.nodes[name])]
        self.coordinator.participants(participants, injectors)

    # ------------------------------------------------------------------ ends
    def _on_task_exit(self, name: str, status: str, error: BaseException | None) -> None:
        """A task or a driver reader ended."""
        self._exit(name)
        if error is not None:
            self._fail(name, error)
            return
        with self._lock:
            was_main = name in self._running_main
            self._running_main.discard(name)
            self._running_detached.discard(name)
            main_done = not self._running_main
            detached_done = not self._running_detached
        if status != "finished" or not main_done:
            return
        if was_main and self.coordinator is not None:
            # The job's last checkpoint is stored before anything else ends (its parts may still be on their way).
            self.coordinator.after_final(lambda: self._main_finished(detached_done))
            return
        self._main_finished(detached_done, was_main)

    def _main_finished(self, detached_done: bool, was_main: bool = True) -> None:
        """The bounded part (or the last service-pipeline task) finished: stop what serves it, or end."""
        if was_main and not detached_done:
            # The bounded job is done: service pipelines stop and drain; services stop after them.
            with self._lock:
                handles = list(self.tasks.items())
            for node_name, handle in handles:
                node = self.graph.nodes[node_name]
                if node.detached and node.is_source:
                    handle.stop()
        elif detached_done:
            self._stop_services()

    def _on_service_exit(self, name: str, status: str, error: BaseException | None) -> None:
        self._exit(f"service:{name}")
        if error is not None:
            self._fail(f"service:{name}", error)
            return
        with self._lock:
            self._running_services.discard(name)
            all_done = not (self._running_services or self._running_main or self._running_detached)
        if all_done:
            self.backend.shutdown()
            self._end("finished")

    def _exit(self, name: str) -> None:
        with self._lock:
            self._alive.discard(name)
            if not self._alive:
                self._exited.set()

    def wait_exited(self, timeout: float) -> bool:
        """Block until every instance of the attempt has ended (up to `timeout` seconds); True if so."""
        return self._exited.wait(timeout)

    def _stop_services(self) -> None:
        if not self.services:
            self.backend.shutdown()
            self._end("finished")
            return
        for handle in list(self.services.values()):
            handle.stop()

    def _end(self, status: str, failed_task: str | None = None, error: BaseException | None = None) -> bool:
        """Report the attempt's end once; False when it was reported already."""
        with self._lock:
            if self._reported:
                return False
            self._reported = True
        self._ended.set()
        if self._control is not None:
            self._control.stop()
        self._on_end(self, status, failed_task, error)
        return True

    def _fail(self, name: str, error: BaseException) -> None:
        cause = error.__cause__ if error.__cause__ is not None else error
        with self._lock:
            first = not self._reported
        if first:
            logger.error("job %s failed in %s: %s", self.job.job_id, name, describe_error(cause))
        self.cancel_all()
        self._end("failed", failed_task=name, error=cause)

    def cancel_all(self) -> None:
        """Cancel every started instance and release the backend (safe to call again for late starters)."""
        self._ended.set()
        if self._control is not None:
            self._control.stop()
        with self._lock:
            handles = list(self.tasks.values()) + list(self.services.values()) + list(self.readers.values())
        for handle in handles:
            handle.cancel()
        self.backend.shutdown()

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """End every source's stream; the job then drains and finishes.

        Service pipelines keep serving while the rest drains (its tasks may
        still call them); they stop on the normal end-of-job path.
        """
        with self._lock:
            handles = list(self.tasks.items())
        for name, handle in handles:
            node = self.graph.nodes[name]
            if node.is_source and not node.detached:
                handle.stop()

    def _handles(self) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[tuple[str, Any]]]:
        """Snapshots of the task, service and reader handles (instances register while the job starts)."""
        with self._lock:
            return list(self.tasks.items()), list(self.services.items()), list(self.readers.items())

    def metrics(self) -> dict[str, Any]:
        """Per task, service and driver reader, plain data (only instances started so far)."""
        tasks, services, readers = self._handles()
        metrics = {name: handle.metrics() for name, handle in tasks}
        metrics.update({f"service:{name}": handle.metrics() for name, handle in services})
        metrics.update({name: reader.metrics() for name, reader in readers})
        return metrics

    def routing_info(self) -> dict[str, Any]:
        """Per task instance started so far: its routing (see `TaskContext.get_routing_info`)."""
        tasks, _, _ = self._handles()
        return {name: handle.routing_info() for name, handle in tasks}


class _AttemptParts:
    """A driver reader's way to the coordinator, tagged with its attempt."""

    def __init__(self, coordinator: CheckpointCoordinator, attempt: int) -> None:
        self._coordinator = coordinator
        self._attempt = attempt

    def on_part(self, part: SnapshotPart) -> None:
        self._coordinator.on_part(self._attempt, part)

    def on_final(self, part: FinalPart) -> None:
        self._coordinator.on_final(self._attempt, part)


def _injects(node: TaskNode) -> bool:
    """A source, or the entry of a loop (it reads a feedback edge)."""
    return node.is_source or (node.loop is not None and bool(node.loop.feedback_upstreams))
