"""Recent durations and their percentiles, shared by the threads that record and read them."""

from __future__ import annotations

import collections
import threading

SAMPLES = 2048
"""Durations kept: percentiles describe the most recent ones."""


class LatencySamples:
    """The last `SAMPLES` durations (seconds), their count and sum since the start.

    Thread-safe: `add` from the threads doing the work, `summary` from any
    reader; each holds a short lock.
    """

    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=SAMPLES)
        self.count = 0
        self.total = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)
            self.count += 1
            self.total += seconds

    def summary(self) -> tuple[float | None, float | None, float, int]:
        """(p50, p99, sum, count): percentiles of the recent durations (None before the first), totals of all."""
        with self._lock:
            recent = sorted(self._recent)
            total, count = self.total, self.count
        return percentile(recent, 0.50), percentile(recent, 0.99), total, count


def percentile(ordered: list[float], share: float) -> float | None:
    """The value below which `share` of the sorted `ordered` values lie (None for none)."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else None
