"""Rates and time shares over the last seconds, from cumulative counters sampled over time.

Tasks only count (records, seconds idle, seconds backpressured): nothing is
timed per record. A `RateWindow` keeps a few recent snapshots of those
counters and turns the difference between now and a snapshot a few seconds
old into records per second and into the share of each second a task spent
busy, idle and backpressured (what Flink reports as busy/idle/backPressured
time per second).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

RATE_SPAN = 3.0
"""Seconds the rates and shares look back over, once enough snapshots exist."""

MIN_SPAN = 0.5
"""A baseline snapshot younger than this is too close to now to divide by: lifetime figures are used."""

_TASK_COUNTERS = ("records_in", "records_out", "elapsed_seconds", "busy_seconds", "idle_seconds",
                  "backpressure_seconds")
_SHARES = (("busy_share", "busy_seconds"), ("idle_share", "idle_seconds"),
           ("backpressure_share", "backpressure_seconds"))
_ACTIVE = 1e-3
"""Less running time than this in the window (seconds) means the task did not run in it: no shares."""


class RateWindow:
    """Adds rates and shares to per-instance metrics, over roughly the last `span` seconds.

    `annotate(metrics)` records the counters it is given and returns new
    dicts with, per task instance: `records_in_per_second`,
    `records_out_per_second`, `busy_share`, `idle_share`,
    `backpressure_share` (fractions of the task's running time in the window,
    each within [0, 1]; they add up to 1; None when the task did not run
    during the window), `window_running_seconds` (how long the task ran
    during the window: the time the shares are fractions of) and
    `rate_window_seconds`; per service: `calls_per_second` and
    `rate_window_seconds`. The window reaches back to the newest snapshot at
    least `span` old, or the oldest kept; with no snapshot at least
    `min_span` old (the first call), figures are over each instance's whole
    life. Thread-safe; never blocks beyond a short lock; keeps at most about
    ten snapshots.
    """

    def __init__(self, span: float = RATE_SPAN, min_span: float = MIN_SPAN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.span = span
        self.min_span = min_span
        self._clock = clock
        self._snapshots: collections.deque[tuple[float, dict[str, tuple[float, ...]]]] = collections.deque()
        self._lock = threading.Lock()

    def annotate(self, metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Return copies of `metrics` (name -> instance metrics) with rates and shares added."""
        now = self._clock()
        current = {name: _counters(m) for name, m in metrics.items()}
        with self._lock:
            snapshots = self._snapshots
            while len(snapshots) >= 2 and snapshots[1][0] <= now - self.span:
                snapshots.popleft()
            baseline = snapshots[0] if snapshots and now - snapshots[0][0] >= self.min_span else None
            if not snapshots or now - snapshots[-1][0] >= self.span / 10:
                snapshots.append((now, current))
        annotated = {}
        for name, m in metrics.items():
            if m.get("kind") == "job":  # the job's own figures (restarts, checkpoints) have no rates
                annotated[name] = dict(m)
                continue
            before = baseline[1].get(name) if baseline is not None else None
            window = now - baseline[0] if baseline is not None and before is not None else None
            annotated[name] = {**m, **_rates(m, current[name], before, window)}
        return annotated


def lifetime(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Copies of `metrics` with the fields `RateWindow` adds, over each instance's whole life."""
    return {name: m if m.get("kind") == "job" else {**m, **_rates(m, _counters(m), None, None)}
            for name, m in metrics.items()}


def _counters(m: dict[str, Any]) -> tuple[float, ...]:
    if m.get("kind") == "service":
        return (float(m.get("calls", 0)),)
    return tuple(float(m.get(key) or 0.0) for key in _TASK_COUNTERS)


def _rates(m: dict[str, Any], now: tuple[float, ...], before: tuple[float, ...] | None,
           window: float | None) -> dict[str, Any]:
    """Rates over `window` seconds since `before`, or over the instance's life when there is no `before`."""
    if m.get("kind") == "service":
        # A service has no running time of its own in its metrics: the first call's figure is a total.
        calls = now[0] - (before[0] if before is not None else 0.0)
        return {"calls_per_second": calls / window if window else None, "rate_window_seconds": window}
    delta = dict(zip(_TASK_COUNTERS, (a - b for a, b in zip(now, before, strict=True)) if before is not None else now,
                     strict=True))
    running = delta["elapsed_seconds"]
    seconds = window if window is not None else running
    result: dict[str, Any] = {"rate_window_seconds": seconds, "window_running_seconds": running}
    for key in ("records_in", "records_out"):
        result[f"{key}_per_second"] = delta[key] / seconds if seconds and seconds > 0 else None
    # A window needs some running time in it to say anything; a whole life needs only to have begun.
    active = running >= _ACTIVE if before is not None else running > 0
    for share, key in _SHARES:
        result[share] = _clamp(delta[key] / running) if active else None
    return result


def _clamp(share: float) -> float:
    """`share` within [0, 1].

    The difference of two readings of a task's counters can be off by a
    hair: float rounding, or counters not all read at one instant (as Task
    metrics were, and as any backend's may be), so a task blocked for a
    whole window could show busy -1e-8 of it. A share outside [0, 1] means
    nothing; it must not reach a reader (a rule comparing shares, a
    Prometheus gauge documented 0 to 1).
    """
    return 0.0 if share < 0.0 else 1.0 if share > 1.0 else share
