"""JobManager: compiles a job spec, starts it through a dispatcher, and keeps the running jobs."""

from __future__ import annotations

import threading
import uuid

from .graph import ExecutionGraph
from .job import JobRun
from .spec import JobSpec
from .supervisor import JobSupervisor


class JobListener:
    """Hooks a `JobManager` calls for every submission; subclass and override what you need.

    Listeners run on the submitting thread, in the order they were added.
    """

    def before_submit(self, spec: JobSpec) -> None:
        """Called first, before anything is built or started. An exception raised here ends the
        submission and reaches the caller of `submit()` (e.g. to compile a pipeline without running it)."""

    def submitted(self, job: JobRun, graph: ExecutionGraph) -> None:
        """Called once the job is registered, right before its instances start."""


class JobManager:
    """A registry of the jobs submitted through it that have not ended yet (a job leaves when it ends).

    `submit(spec)` compiles the pipeline into an `ExecutionGraph` (one task
    per transformation and parallel index, one input queue per task, one
    request queue per service), starts it through a `JobSupervisor` (which
    runs attempts with a `Dispatcher` each, and restarts them) and returns
    the `JobRun`. Listeners (`add_listener`) see every submission.
    Thread-safe. The process has one default manager, `job_manager()`, which
    environments submit to.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, JobRun] = {}
        self._graphs: dict[str, ExecutionGraph] = {}
        self._listeners: list[JobListener] = []
        self._lock = threading.Lock()

    def add_listener(self, listener: JobListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: JobListener) -> None:
        """Forget `listener`; `ValueError` if it was not added."""
        with self._lock:
            self._listeners.remove(listener)

    def running_jobs(self) -> list[JobRun]:
        """A snapshot of the jobs submitted here that have not ended."""
        with self._lock:
            return list(self._jobs.values())

    def graph(self, job_id: str) -> ExecutionGraph:
        """The execution graph of running job `job_id`; `KeyError` once it has ended (or never ran here)."""
        with self._lock:
            return self._graphs[job_id]

    def _forget(self, job: JobRun) -> None:
        with self._lock:
            self._jobs.pop(job.job_id, None)
            self._graphs.pop(job.job_id, None)

    def submit(self, spec: JobSpec) -> JobRun:
        """Compile, place and start the job; return once every instance has started.

        Raises `PipelineError` for a pipeline that cannot run (naming what),
        and whatever a listener's `before_submit` raises.
        """
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.before_submit(spec)
        job = JobRun(f"{spec.name}-{uuid.uuid4().hex[:8]}", spec.name)
        supervisor = JobSupervisor(job, spec)
        graph = supervisor.prepare()
        job_id = job.job_id
        with self._lock:
            self._jobs[job_id] = job
            self._graphs[job_id] = graph
        job.add_done_callback(self._forget)
        for listener in listeners:
            listener.submitted(job, graph)
        supervisor.start()
        return job


_default = JobManager()


def job_manager() -> JobManager:
    """The process's default job manager (the one environments submit to)."""
    return _default
