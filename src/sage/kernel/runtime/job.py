"""The handle users get from `env.submit()`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from ..errors import JobFailedError

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

STATUSES = ("running", "finished", "failed", "cancelled")


class Job:
    """A submitted pipeline: its status, completion, control and metrics.

    `status` is "running", then exactly one of "finished", "failed" or
    "cancelled". Completion is an event: `wait()` blocks on it, it never polls.
    """

    def __init__(self, job_id: str, name: str) -> None:
        self.job_id = job_id
        self.name = name
        self.status = "running"
        self.failed_task: str | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._dispatcher: "Dispatcher | None" = None
        self._callbacks: list[Callable[["Job"], None]] = []

    # ------------------------------------------------------------------ completion
    def _end(self, status: str, failed_task: str | None = None, error: BaseException | None = None) -> bool:
        """Move to a final status once; returns False when the job had already ended."""
        with self._lock:
            if self.status != "running":
                return False
            self.status, self.failed_task, self.error = status, failed_task, error
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for callback in callbacks:
            callback(self)
        return True

    def add_done_callback(self, callback: Callable[["Job"], None]) -> None:
        """Call `callback(job)` once the job has ended (at once if it already has)."""
        with self._lock:
            if self.status == "running":
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
            cause = self.error
            raise JobFailedError(
                f"job {self.job_id} failed in task {self.failed_task!r}: {type(cause).__name__}: {cause}",
                self.failed_task,
            ) from cause
        return self.status

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Graceful stop: sources end their streams, everything in flight drains, the job finishes.

        Returns at once; `wait()` for the end. Nothing already emitted is lost.
        """
        if self._dispatcher is not None:
            self._dispatcher.stop()

    def cancel(self) -> None:
        """Stop now: every task exits promptly; records in flight are abandoned. Status "cancelled"."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()

    # ------------------------------------------------------------------ insight
    def metrics(self) -> dict[str, Any]:
        """Per task instance: status, records in/out, errors, busy/idle/backpressure seconds."""
        return self._dispatcher.metrics() if self._dispatcher is not None else {}

    def routing_info(self) -> dict[str, Any]:
        """Per task instance: its broadcast groups, connections, target names and queue ids."""
        return self._dispatcher.routing_info() if self._dispatcher is not None else {}

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, status={self.status!r})"
