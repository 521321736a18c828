"""JobManager: compiles an environment's pipeline and hands it to a dispatcher."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable

from .dispatcher import Dispatcher
from .graph import ExecutionGraph
from .job import Job

if TYPE_CHECKING:
    from ..api.environment import BaseEnvironment


def create_backend(env: "BaseEnvironment") -> Any:
    """The backend the environment asks for (imported only when used, so Ray stays optional)."""
    if env.backend == "local":
        from .backend import LocalBackend

        return LocalBackend()
    if env.backend == "ray":
        from .backend.ray_backend import RayBackend

        return RayBackend(env)
    raise ValueError(f"unknown backend {env.backend!r}")


class JobManager:
    """Process-wide registry of running jobs (a job leaves it when it ends).

    `submit(env)` compiles the pipeline into an `ExecutionGraph` (one task per
    transformation and parallel index, one input queue per task, one request
    queue per service), starts it through a `Dispatcher` and returns the `Job`.
    Listeners added with `add_listener` see every job as it is submitted (the
    command line uses this to watch jobs a user script starts).
    """

    jobs: dict[str, Job] = {}
    graphs: dict[str, ExecutionGraph] = {}
    _listeners: list[Callable[[Job, ExecutionGraph], None]] = []
    _lock = threading.Lock()
    submit_hook: Callable[["BaseEnvironment"], Job] | None = None
    """When set, `submit(env)` returns `submit_hook(env)` and starts nothing (`sage-kernel graph`
    sets it to compile a script's pipeline without running it)."""

    @classmethod
    def add_listener(cls, listener: Callable[[Job, ExecutionGraph], None]) -> None:
        with cls._lock:
            cls._listeners.append(listener)

    @classmethod
    def remove_listener(cls, listener: Callable[[Job, ExecutionGraph], None]) -> None:
        with cls._lock:
            cls._listeners.remove(listener)

    @classmethod
    def running_jobs(cls) -> list[Job]:
        """A snapshot of the jobs submitted in this process that have not ended."""
        with cls._lock:
            return list(cls.jobs.values())

    @classmethod
    def _forget(cls, job: Job) -> None:
        with cls._lock:
            cls.jobs.pop(job.job_id, None)
            cls.graphs.pop(job.job_id, None)

    @classmethod
    def compile(cls, env: "BaseEnvironment", job_id: str, backend: Any) -> ExecutionGraph:
        config = env.config
        factory = backend.queue_factory(config.transport or backend.default_transport)
        return ExecutionGraph(job_id, env.transformations, env.services, factory,
                              config.queue_maxsize, config.service_queue_maxsize)

    @classmethod
    def submit(cls, env: "BaseEnvironment") -> Job:
        if cls.submit_hook is not None:
            return cls.submit_hook(env)
        job_id = f"{env.name}-{uuid.uuid4().hex[:8]}"
        backend = create_backend(env)
        graph = cls.compile(env, job_id, backend)
        backend.prepare(graph)
        job = Job(job_id, env.name)
        dispatcher = Dispatcher(job, graph, backend, env.config)
        job._dispatcher = dispatcher
        with cls._lock:
            cls.jobs[job_id] = job
            cls.graphs[job_id] = graph
            listeners = list(cls._listeners)
        job.add_done_callback(cls._forget)
        for listener in listeners:
            listener(job, graph)
        dispatcher.submit()
        return job
