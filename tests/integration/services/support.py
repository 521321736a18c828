"""Helpers for service tests on the local backend.

Every task and service runs on a thread of the test process, so services,
functions and the test share plain objects (lists, events, barriers) through
constructor arguments. `Probe` runs a test-chosen body inside a map function,
where service calls can be made, and hands back what it returned or raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.job import Job

JOB_TIMEOUT = 20.0
"""Seconds any test waits for a job; far above what a passing test needs."""

AT_ONCE = 5.0
"""A call that must fail "at once" is made with a timeout of `10 * AT_ONCE` and must fail within this."""


class Outcome:
    """What a probe body did: its return `value`, or the exception it `raised`, and how long it took."""

    def __init__(self, value: Any = None, raised: BaseException | None = None, seconds: float = 0.0,
                 task: str = "") -> None:
        self.value = value
        self.raised = raised
        self.seconds = seconds
        self.task = task


class Probe(MapFunction):
    """Calls `body(self, record)` for every record and emits an `Outcome` (never raises)."""

    def __init__(self, body: Callable[[MapFunction, Any], Any]) -> None:
        self.body = body

    def execute(self, record: Any) -> Outcome:
        started = time.monotonic()
        try:
            value = self.body(self, record)
        except Exception as exc:
            return Outcome(raised=exc, seconds=time.monotonic() - started, task=self.ctx.name)
        return Outcome(value=value, seconds=time.monotonic() - started, task=self.ctx.name)


def run_probes(env: LocalEnvironment, body: Callable[[MapFunction, Any], Any], records: list[Any] | None = None,
               parallelism: int = 1) -> list[Outcome]:
    """Run `body` once per record (default: one record) in `parallelism` map instances; wait for the job."""
    out: list[Outcome] = []
    env.from_batch(records if records is not None else [0]).map(Probe, body, parallelism=parallelism).sink(out.append)
    finish(env.submit())
    return out


def run_probe(env: LocalEnvironment, body: Callable[[MapFunction, Any], Any]) -> Outcome:
    """Run `body` once in one map instance and return its outcome."""
    (outcome,) = run_probes(env, body)
    return outcome


def finish(job: Job) -> str:
    """Wait for `job` to end on its own; cancel it (and fail the test) if it does not."""
    try:
        return job.wait(JOB_TIMEOUT)
    finally:
        if not job.done():
            job.cancel()


class Gauge:
    """Counts how many threads are inside a section at once, and the peak (lock-protected);
    `entered` is set once a thread has been inside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.entered = threading.Event()

    def __enter__(self) -> Gauge:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        self.entered.set()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self.active -= 1
