"""Dispatcher: starts a job's instances on a backend and tracks their ends."""

from __future__ import annotations

import logging
import threading
from typing import Any

from .config import JobConfig
from .context import TaskContext
from .graph import ExecutionGraph
from .job import Job

logger = logging.getLogger(__name__)


class Dispatcher:
    """Creates task (and service) instances with their contexts, starts them and watches them end.

    Every instance reports its end once, through a callback from the backend
    (no polling). The job finishes when every task finished; the first
    failure fails it and cancels the rest; services stop when the job ends.
    """

    def __init__(self, job: Job, graph: ExecutionGraph, backend: Any, config: JobConfig) -> None:
        self.job = job
        self.graph = graph
        self.backend = backend
        self.config = config
        self.tasks: dict[str, Any] = {}
        self.services: dict[str, Any] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._queue_factory = backend.queue_factory(config.transport or backend.default_transport)

    def response_queue(self, owner: str) -> Any:
        """A fresh, lazily created response queue descriptor for one instance's service calls."""
        return self._queue_factory(f"{self.job.job_id}.{owner}.responses", 0)

    def task_context(self, name: str) -> TaskContext:
        node = self.graph.nodes[name]
        return TaskContext(node.name, node.basename, node.spec.kind, node.parallel_index, node.parallelism,
                           self.job.job_id, self.config, node.input_qd, node.downstream_groups,
                           node.upstream_names, self.graph.service_qds(), self.response_queue(node.name))

    def submit(self) -> None:
        """Start services first, then every task; returns once all are started."""
        if self.graph.services:
            from .service.service_runner import start_services

            self.services = start_services(self)
        with self._lock:
            self._running = set(self.graph.nodes)
        for name, node in self.graph.nodes.items():
            self.tasks[name] = self.backend.start_task(node, self.task_context(name), node.spec, self._on_task_exit)

    # ------------------------------------------------------------------ ends
    def _on_task_exit(self, name: str, status: str, error: BaseException | None) -> None:
        if error is not None:
            self._fail(name, error)
            return
        with self._lock:
            self._running.discard(name)
            all_done = not self._running
        if status == "finished" and all_done:
            self._shutdown()
            self.job._end("finished")

    def _fail(self, name: str, error: BaseException) -> None:
        cause = error.__cause__ if error.__cause__ is not None else error
        if self.job._end("failed", failed_task=name, error=cause):
            logger.error("job %s failed in task %s: %r", self.job.job_id, name, cause)
            self._cancel_all()
            self._shutdown()

    def on_service_failure(self, name: str, error: BaseException) -> None:
        """A service instance died: the job cannot go on."""
        self._fail(f"service:{name}", error)

    def _cancel_all(self) -> None:
        for handle in list(self.tasks.values()):
            handle.cancel()

    def _shutdown(self) -> None:
        for handle in list(self.services.values()):
            handle.stop()
        self.backend.shutdown()

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """End every source's stream; the job then drains and finishes."""
        for name, handle in list(self.tasks.items()):
            if self.graph.nodes[name].is_source:
                handle.stop()

    def cancel(self) -> None:
        """Cancel every instance now; the job ends "cancelled" (unless it already ended)."""
        if self.job._end("cancelled"):
            self._cancel_all()
            self._shutdown()

    def metrics(self) -> dict[str, Any]:
        return {name: handle.metrics() for name, handle in self.tasks.items()}

    def routing_info(self) -> dict[str, Any]:
        return {name: handle.routing_info() for name, handle in self.tasks.items()}
