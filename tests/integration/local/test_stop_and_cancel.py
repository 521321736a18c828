"""`job.stop()` drains an unbounded job without losing a record; `job.cancel()` ends it now."""

from __future__ import annotations

import threading

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import SourceFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT, CountTo, input_queue, join_task_threads, wait_until_producer_blocked


class Counting(SourceFunction):
    """An endless source of 0, 1, 2, ... that counts, in `emitted`, every record it returns."""

    def __init__(self, emitted: list[int]) -> None:
        self.emitted = emitted

    def execute(self) -> int:
        n = len(self.emitted)
        self.emitted.append(n)
        return n


@pytest.mark.parametrize("maxsize", [4096, 3])
def test_stop_drains_every_record_the_source_emitted(maxsize: int) -> None:
    emitted: list[int] = []
    out: list[int] = []
    reached = threading.Event()
    env = LocalEnvironment("drain", config={"queue_maxsize": maxsize})
    (env.from_source(Counting, emitted)
        .map(lambda x: x + 1, parallelism=2)
        .keyby(lambda x: x % 5)
        .map(lambda x: x - 1, parallelism=2)
        .sink(CountTo, out, 2000, reached))
    job = env.submit()
    assert reached.wait(JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert len(emitted) >= 2000
    assert sorted(out) == emitted
    assert job.metrics()["Counting_0"]["records_out"] == len(emitted)


def test_stop_ends_a_bounded_source_early_and_drains_what_it_sent() -> None:
    n = 1_000_000
    out: list[int] = []
    reached = threading.Event()
    env = LocalEnvironment("stop-batch")
    env.from_batch(range(n)).map(lambda x: x).sink(CountTo, out, 1000, reached)
    job = env.submit()
    assert reached.wait(JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert 1000 <= len(out) < n
    assert out == list(range(len(out)))  # one channel: in order, no gap, nothing lost
    assert job.metrics()["from_batch_0"]["records_out"] == len(out)


def test_a_source_returning_none_waits_and_stop_still_drains() -> None:
    """A SourceFunction with nothing to give (None) is polled again; stop() ends it cleanly."""
    ready = threading.Event()
    given: list[int] = []

    def sometimes() -> int | None:
        if len(given) >= 50:
            ready.set()
            return None
        given.append(len(given))
        return given[-1]

    out: list[int] = []
    env = LocalEnvironment("idle-source")
    env.from_source(sometimes).sink(TestingSink, out)
    job = env.submit()
    assert ready.wait(JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert out == list(range(50))


def test_cancel_ends_an_unbounded_job_at_once() -> None:
    reached = threading.Event()
    env = LocalEnvironment("cancel")
    env.from_source(Counting, []).map(lambda x: x * 2, parallelism=2).sink(CountTo, [], 100, reached)
    job = env.submit()
    assert reached.wait(JOB_TIMEOUT)
    job.cancel()
    assert job.status == "cancelled"
    assert job.wait(0) == "cancelled"
    statuses = join_task_threads(job, timeout=5)
    assert set(statuses.values()) == {"cancelled"}


def test_cancel_unblocks_a_task_waiting_for_room_downstream() -> None:
    """A source blocked on a full queue (its sink is stuck) still ends on cancel."""
    release = threading.Event()
    entered = threading.Event()

    def stuck_sink(_: int) -> None:
        entered.set()
        release.wait(JOB_TIMEOUT)

    env = LocalEnvironment("cancel-blocked", config={"queue_maxsize": 2, "batch_size": 1})
    env.from_source(Counting, []).sink(stuck_sink)
    job = env.submit()
    assert entered.wait(JOB_TIMEOUT)
    wait_until_producer_blocked(input_queue(job, "stuck_sink_0"))
    job.cancel()
    release.set()
    statuses = join_task_threads(job, timeout=5)
    assert set(statuses.values()) == {"cancelled"}


def test_stop_and_cancel_after_the_end_change_nothing() -> None:
    env = LocalEnvironment("ended")
    env.from_batch([1, 2, 3]).sink(TestingSink, [])
    job = env.submit(autostop=True)
    job.stop()
    job.cancel()
    assert job.status == "finished" and job.wait(0) == "finished"
