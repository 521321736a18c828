"""A job as the runtime sees it: its status, its completion, its control and its counters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import JobCancelledError, JobFailedError, describe_error
from .collect import CollectedRecords

FINAL_STATUSES = ("finished", "failed", "cancelled")


class JobControl(Protocol):
    """What drives a running job (the dispatcher)."""

    def stop(self) -> None: ...

    def cancel(self) -> None: ...

    def metrics(self) -> dict[str, Any]: ...

    def routing_info(self) -> dict[str, Any]: ...


class JobRun:
    """One submitted job: status, completion, control and per-instance counters.

    `status` is "running" ("restarting" while an automatic restart is
    under way), then exactly one of "finished", "failed" or "cancelled".
    Completion is an event: `wait()` blocks on it, it never polls. The
    supervisor that runs the job binds itself as the control (`bind`) and
    ends the job (`end`). Users get this through the api's `Job` handle,
    which adds rates and other views (observability).
    """

    def __init__(self, job_id: str, name: str) -> None:
        self.job_id = job_id
        self.name = name
        self.status = "running"
        self.failed_task: str | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._control: JobControl | None = None
        self._callbacks: list[Callable[[JobRun], None]] = []
        self.results: dict[str, CollectedRecords] = {}
        """Per `collect` edge (by its name): the records the driver receives."""

    def bind(self, control: JobControl) -> None:
        """Set what `stop()`, `cancel()`, `instance_metrics()` and `routing_info()` act on."""
        self._control = control

    # ------------------------------------------------------------------ completion
    def restarting(self, restarting: bool) -> bool:
        """Show "restarting" (True) or "running" again (False); False when the job had already ended."""
        with self._lock:
            if self.status in FINAL_STATUSES:
                return False
            self.status = "restarting" if restarting else "running"
            return True

    def end(self, status: str, failed_task: str | None = None, error: BaseException | None = None) -> bool:
        """Move to the final `status` once (callbacks run then); False when the job had already ended."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"a job ends 'finished', 'failed' or 'cancelled', not {status!r}")
        with self._lock:
            if self.status in FINAL_STATUSES:
                return False
            self.status, self.failed_task, self.error = status, failed_task, error
            callbacks, self._callbacks = self._callbacks, []
        if status != "finished":
            # Results still arriving will never be complete: their readers get the job's error.
            incomplete = self._outcome_error()
            for records in self.results.values():
                records.fail(incomplete)
        self._done.set()
        for callback in callbacks:
            callback(self)
        return True

    def add_done_callback(self, callback: Callable[[JobRun], None]) -> None:
        """Call `callback(job)` once the job has ended (at once if it already has)."""
        with self._lock:
            if self.status not in FINAL_STATUSES:
                self._callbacks.append(callback)
                return
        callback(self)

    def done(self) -> bool:
        """True once the job has finished, failed or been cancelled."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends; return its final status.

        Raises `TimeoutError` if it is still running after `timeout` seconds,
        and `JobFailedError` (message naming the task, `__cause__` the original
        exception with its traceback) if it failed.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.job_id} still running after {timeout} s")
        if self.status == "failed":
            raise self._outcome_error()
        return self.status

    def _outcome_error(self) -> BaseException:
        """What a job that did not finish means to whoever waited for its results."""
        if self.status == "cancelled":
            return JobCancelledError(f"job {self.job_id} was cancelled")
        cause = self.error
        failure = JobFailedError(
            f"job {self.job_id} failed in task {self.failed_task!r}: "
            f"{describe_error(cause) if cause is not None else 'unknown error'}",
            self.failed_task,
        )
        failure.__cause__ = cause
        return failure

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Graceful stop: sources end their streams, everything in flight drains, the job finishes.

        Returns at once; `wait()` for the end. Nothing already emitted is lost.
        """
        if self._control is not None:
            self._control.stop()

    def cancel(self) -> None:
        """Stop now: every task exits promptly; records in flight are abandoned. Status "cancelled"."""
        if self._control is not None:
            self._control.cancel()

    # ------------------------------------------------------------------ insight
    def instance_metrics(self) -> dict[str, dict[str, Any]]:
        """Cumulative counters of every task and service instance, by instance name (services as
        `service:{name}`), and the job's own under "job"; on Ray each call asks every actor (a round trip each)."""
        return self._control.metrics() if self._control is not None else {}

    def routing_info(self) -> dict[str, Any]:
        """Per task instance: its broadcast groups with their strategy, connections, target names and queue ids."""
        return self._control.routing_info() if self._control is not None else {}

    def __repr__(self) -> str:
        return f"JobRun({self.job_id!r}, status={self.status!r})"
