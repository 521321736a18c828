"""The backend contract: how the dispatcher makes queues and runs instances, on any engine.

A backend runs the instances of one job. The dispatcher calls it in this
order: `queue_factory(transport)` while the job is compiled, `prepare(graph)`
once the execution graph exists, `start_service` / `start_task` for every
instance, and `shutdown()` once the job has ended (possibly more than once).
Each start returns an `InstanceHandle`; the backend reports every instance's
end exactly once through the `ExitCallback` it was given. A new engine is one
new module with a class that satisfies `Backend`, named in `BACKENDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import PipelineError

if TYPE_CHECKING:
    from ..context import ServiceContext, TaskContext
    from ..graph import ExecutionGraph, ServiceNode, TaskNode
    from ..graph.execution_graph import QueueFactory
    from ..spec import JobSpec

ExitCallback = Callable[[str, str, "BaseException | None"], None]
"""Called once when an instance's run ends: `(name, status, error or None)`; status is
"finished", "cancelled" or "failed" (then `error` is the cause)."""


class InstanceHandle(Protocol):
    """The dispatcher's view of one running task or service instance."""

    name: str

    def stop(self) -> None:
        """Ask the instance to end its stream (a source) or stop serving (a service); returns at once."""

    def cancel(self) -> None:
        """Make the instance exit promptly, abandoning what it holds; returns at once."""

    def metrics(self) -> dict[str, Any]:
        """The instance's counters (plain data); never raises for an instance that is gone."""

    def routing_info(self) -> dict[str, Any]:
        """The instance's routing (tasks only), see `TaskContext.get_routing_info`."""

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        """A source task injects barrier `checkpoint_id` at its next safe point; returns at once."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` is complete (tasks only); returns at once."""


class Backend(Protocol):
    """Runs one job's instances (see the module docs for the call order)."""

    name: str
    default_transport: str

    def queue_factory(self, transport: str) -> QueueFactory:
        """The descriptor factory for `transport`; `PipelineError` for one this backend cannot use."""

    def prepare(self, graph: ExecutionGraph) -> None:
        """Check and place the job before anything starts; `PipelineError` names what cannot run."""

    def start_task(self, node: TaskNode, ctx: TaskContext, on_exit: ExitCallback) -> InstanceHandle:
        """Start one task instance; returns once it is started."""

    def start_service(self, node: ServiceNode, ctx: ServiceContext, on_exit: ExitCallback) -> InstanceHandle:
        """Start one service instance; returns once it is started."""

    def shutdown(self) -> None:
        """Release everything the job holds (queues, actors); safe to call again; never raises."""


BACKENDS: dict[str, str] = {
    "local": "sage.kernel.runtime.backend.local_backend:LocalBackend",
    "ray": "sage.kernel.runtime.backend.ray_backend:RayBackend",
}
"""Backend name -> `module:class`, imported on first use (Ray loads only for Ray jobs)."""


def create_backend(spec: JobSpec) -> Backend:
    """The backend `spec.backend` names, built for `spec`.

    Raises `PipelineError` for an unknown backend name; the backend's own
    constructor may raise for what it cannot provide (Ray not installed).
    """
    target = BACKENDS.get(spec.backend)
    if target is None:
        raise PipelineError(f"unknown backend {spec.backend!r}; known: {', '.join(sorted(BACKENDS))}")
    if spec.backend == "ray":
        from .ray_setup import ensure_ray

        ensure_ray(spec.backend_options.get("address"))  # before ray_backend imports Ray
    module_name, class_name = target.split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(spec)
    return backend
