"""A source's checkpointed position and what it sent agree: a record taken from the function is sent before a
barrier or a stop counts it, so a restart or a resume neither loses nor repeats it."""

from __future__ import annotations

import threading
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import BatchFunction, MapFunction

from .test_restarts import FailOnce

JOB_TIMEOUT = 120.0
"""Seconds a test waits for a job that ends at once when all is well."""


class Count(BatchFunction):
    """0 .. n-1, one record per call, its position in its state."""

    def __init__(self, n: int) -> None:
        self.n, self.i = n, 0

    def execute(self) -> int | None:
        if self.i >= self.n:
            return None
        self.i += 1
        return self.i - 1

    def get_state(self) -> int:
        return self.i

    def restore_state(self, state: int) -> None:
        self.i = state


def test_a_restart_neither_loses_nor_repeats_the_record_a_barrier_followed(tmp_path) -> None:
    count = 100_000
    env = LocalEnvironment("source-position-restart", config={
        "checkpoint_interval": 0.005, "checkpoint_dir": str(tmp_path), "restart_attempts": 1, "restart_delay": 0.01})
    results = env.from_batch(Count, count).map(FailOnce, count * 3 // 4, threading.Event()).collect()
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert job.metrics()["job"]["restarts"] == 1
    assert sorted(results) == list(range(count))


class HoldsAt(MapFunction):
    """Passes records on; at record `at` it says so (`reached`) and waits for `go`: the source behind it is
    then held back mid-sequence by the full queues."""

    def __init__(self, at: int, reached: threading.Event, go: threading.Event) -> None:
        self.at, self.reached, self.go, self.seen = at, reached, go, 0

    def execute(self, record: Any) -> Any:
        self.seen += 1
        if self.seen == self.at:
            self.reached.set()
            assert self.go.wait(JOB_TIMEOUT)
        return record


def test_a_stopped_job_resumes_after_the_last_run_its_source_took(tmp_path) -> None:
    count = 50_000
    config = {"checkpoint_interval": 0.05, "checkpoint_dir": str(tmp_path), "queue_maxsize": 64}

    env = LocalEnvironment("source-position-stop", config=config)
    reached, go = threading.Event(), threading.Event()
    first = env.from_batch(range(count)).map(HoldsAt, 5_000, reached, go).collect()
    job = env.submit()
    assert reached.wait(JOB_TIMEOUT)
    job.stop()  # the source is mid-sequence
    go.set()
    assert job.wait(JOB_TIMEOUT) == "finished"
    taken = list(first)
    assert len(taken) < count

    env = LocalEnvironment("source-position-stop", config=config)  # the same pipeline resumes where it stopped
    second = env.from_batch(range(count)).map(HoldsAt, 0, threading.Event(), go).collect()  # holds nowhere
    env.submit(autostop=True)
    assert sorted(taken + list(second)) == list(range(count))
