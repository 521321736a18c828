"""Compiling a job spec into the execution graph of one attempt, with the backend's queues."""

from __future__ import annotations

from .backend import Backend
from .graph import ExecutionGraph
from .spec import JobSpec


def compile_graph(spec: JobSpec, job_id: str, backend: Backend, queue_prefix: str | None = None) -> ExecutionGraph:
    """The execution graph of `spec`, its queues made by `backend` for the transport `spec` asks for.

    `queue_prefix` (default `job_id`) starts every queue id: a restarted
    attempt passes a new one and gets fresh queues. Raises `PipelineError`
    for a pipeline that cannot be compiled.
    """
    config = spec.config
    factory = backend.queue_factory(spec.transport or backend.default_transport)
    return ExecutionGraph(job_id, spec.transformations, spec.services, factory, config.queue_maxsize,
                          config.service_queue_maxsize, queue_prefix=queue_prefix,
                          checkpointing=config.checkpointing)
