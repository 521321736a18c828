"""What the calls of one async operator instance did, for its task's metrics."""

from __future__ import annotations

from typing import Any

from ..latency import LatencySamples


class CallStats:
    """Counters of one instance's calls.

    Written by the event loop thread only (one writer: plain integers are
    enough); read by any thread through `snapshot()`.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        """Calls started and not yet finished (running, or waiting for the rate limit or a retry)."""
        self.completed = 0
        self.failed = 0
        """Calls that failed after their retries (each one skipped or failing the job)."""
        self.retried = 0
        """Attempts after the first, over all calls."""
        self.timed_out = 0
        """Attempts that ran out of time (retried or not)."""
        self.rate_limited_waits = 0
        """Attempts that waited for the rate limit."""
        self.latency = LatencySamples()
        """Seconds from a call's first attempt to its last record, retries and their waits included."""

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data, with latency p50/p99 (seconds, recent calls) and sum."""
        p50, p99, total, _ = self.latency.summary()
        return {"capacity": self.capacity, "in_flight": self.in_flight, "completed": self.completed,
                "failed": self.failed, "retried": self.retried, "timed_out": self.timed_out,
                "rate_limited_waits": self.rate_limited_waits, "latency_p50": p50, "latency_p99": p99,
                "latency_sum": total}
