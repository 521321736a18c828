"""The handle users get from `env.submit()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..observability.prometheus import to_prometheus
from ..observability.rates import RateWindow
from ..runtime.job import JobRun


class Job:
    """A submitted pipeline: its status, completion, control and metrics.

    `status` is "running" ("restarting" during an automatic restart), then
    exactly one of "finished", "failed" or "cancelled". Completion is an event: `wait()` blocks on it, it never
    polls. The runtime's `JobRun` does the work; this handle adds views of
    its counters (rates, shares, Prometheus text).
    """

    def __init__(self, run: JobRun) -> None:
        self.run = run
        self._rates = RateWindow()

    @property
    def job_id(self) -> str:
        return self.run.job_id

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def status(self) -> str:
        """"running" (or "restarting"), then "finished", "failed" or "cancelled"."""
        return self.run.status

    @property
    def failed_task(self) -> str | None:
        """The instance whose failure failed the job (None unless it failed)."""
        return self.run.failed_task

    @property
    def error(self) -> BaseException | None:
        """The exception that failed the job (None unless it failed)."""
        return self.run.error

    def done(self) -> bool:
        """True once the job has finished, failed or been cancelled."""
        return self.run.done()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends; return its final status.

        Raises `TimeoutError` if it is still running after `timeout` seconds,
        and `JobFailedError` (message naming the task, `__cause__` the original
        exception with its traceback) if it failed.
        """
        return self.run.wait(timeout)

    def add_done_callback(self, callback: Callable[[Job], None]) -> None:
        """Call `callback(job)` once the job has ended (at once if it already has)."""
        self.run.add_done_callback(lambda _run: callback(self))

    def stop(self) -> None:
        """Graceful stop: sources end their streams, everything in flight drains, the job finishes.

        Returns at once; `wait()` for the end. Nothing already emitted is lost.
        """
        self.run.stop()

    def cancel(self) -> None:
        """Stop now: every task exits promptly; records in flight are abandoned. Status "cancelled"."""
        self.run.cancel()

    def metrics(self, format: str = "dict") -> dict[str, Any] | str:
        """Metrics of every task and service instance, by instance name (services as `service:{name}`),
        and the job's own figures under "job" (kind "job": attempt, restarts, checkpoints).

        Per task: status, records in/out, errors, elapsed/busy/idle/backpressure
        seconds (cumulative), input queue size/capacity/load, and over the last
        few seconds records in/out per second and the busy/idle/backpressure
        share of each second. Per service: calls, errors, expired requests,
        latency p50/p99 and sum, calls per caller, calls per second. Rates come
        from the difference with an earlier call's counters (see `RateWindow`):
        the first call gives lifetime figures.

        `format="prometheus"` returns the same as Prometheus text instead.
        On Ray each call asks every actor (a round trip each). Raises
        `ValueError` for another format.
        """
        if format not in ("dict", "prometheus"):
            raise ValueError(f"metrics format must be 'dict' or 'prometheus', got {format!r}")
        metrics = self._rates.annotate(self.run.instance_metrics())
        return to_prometheus(self.job_id, self.status, metrics) if format == "prometheus" else metrics

    def routing_info(self) -> dict[str, Any]:
        """Per task instance: its broadcast groups with their strategy, connections, target names and queue ids."""
        return self.run.routing_info()

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, status={self.status!r})"
