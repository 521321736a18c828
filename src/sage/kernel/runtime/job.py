"""The handle users get from `env.submit()`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from ..errors import JobFailedError, describe_error
from ..observability.prometheus import to_prometheus
from ..observability.rates import RateWindow

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
        self._rates = RateWindow()

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
                f"job {self.job_id} failed in task {self.failed_task!r}: {describe_error(cause)}",
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
    def metrics(self, format: str = "dict") -> dict[str, Any] | str:
        """Metrics of every task and service instance, by instance name (services as `service:{name}`).

        Per task: status, records in/out, errors, elapsed/busy/idle/backpressure
        seconds (cumulative), input queue size/capacity/load, and over the last
        few seconds records in/out per second and the busy/idle/backpressure
        share of each second. Per service: calls, errors, expired requests,
        latency p50/p99 and sum, calls per caller, calls per second. Rates come
        from the difference with an earlier call's counters (see `RateWindow`):
        the first call gives lifetime figures.

        `format="prometheus"` returns the same as Prometheus text instead.
        On Ray each call asks every actor (a round trip each).
        """
        if format not in ("dict", "prometheus"):
            raise ValueError(f"metrics format must be 'dict' or 'prometheus', got {format!r}")
        metrics = self._rates.annotate(self._dispatcher.metrics() if self._dispatcher is not None else {})
        return to_prometheus(self.job_id, self.status, metrics) if format == "prometheus" else metrics

    def routing_info(self) -> dict[str, Any]:
        """Per task instance: its broadcast groups with their strategy, connections, target names and queue ids."""
        return self._dispatcher.routing_info() if self._dispatcher is not None else {}

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, status={self.status!r})"
