"""collect(): records back in the driver, complete after autostop, live and bounded while iterating,
loud on failure and cancel; the public testing kit."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from sage.kernel import JobFailedError, LocalEnvironment, PipelineError
from sage.kernel.api.function import MapFunction
from sage.kernel.errors import JobCancelledError
from sage.kernel.testing import TestingSink, TestingSource, wait_until

from .support import JOB_TIMEOUT


@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_after_autostop_the_results_hold_every_record(transport: str) -> None:
    env = LocalEnvironment("collect-all", config={"transport": transport, "queue_maxsize": 64})
    stream = env.from_batch(range(20_000), parallelism=3).map(lambda x: x * 2, parallelism=2)
    doubled = stream.collect()
    keyed = stream.keyby(lambda x: x % 7).map(lambda x: (x % 7, x), parallelism=3).collect()
    env.submit(autostop=True)  # finishes although nobody read yet: the driver keeps what arrives
    assert Counter(doubled) == Counter(x * 2 for x in range(20_000))
    assert Counter(key for key, _ in keyed) == Counter((x * 2) % 7 for x in range(20_000))
    assert list(doubled) == []  # iteration consumed them


def test_records_of_one_channel_arrive_in_order() -> None:
    env = LocalEnvironment("collect-order", config={"batch_size": 7, "queue_maxsize": 10})
    results = env.from_batch(range(5000)).map(lambda x: x + 1).collect()
    env.submit(autostop=True)
    assert list(results) == [x + 1 for x in range(5000)]


class Gate(MapFunction):
    """Counts what it has let through, so the test can see how far the job ran ahead of the reader."""

    def __init__(self, passed: list[int]) -> None:
        self.passed = passed

    def execute(self, x: int) -> int:
        self.passed[0] += 1
        return x


def test_a_live_reader_gets_records_as_they_come_and_bounds_what_waits() -> None:
    passed = [0]
    env = LocalEnvironment("collect-live", config={"queue_maxsize": 16, "batch_size": 8})
    results = env.from_batch(range(50_000)).map(Gate, passed).collect(capacity=100)
    job = env.submit()
    got = []
    ahead = []
    for record in results:
        got.append(record)
        if len(got) % 1000 == 0:
            ahead.append(passed[0] - len(got))
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert got == list(range(50_000))
    # What ran ahead of the reader: the driver's capacity, the queues between, and the batches in flight.
    assert max(ahead) <= 100 + 16 + 16 + 3 * 8 + 64 * 8


def test_iterating_a_failed_job_raises_its_error() -> None:
    def fail_late(x: int) -> int:
        if x == 900:
            raise ValueError("record 900")
        return x

    env = LocalEnvironment("collect-fails")
    results = env.from_batch(range(1000)).map(fail_late).collect()
    job = env.submit()
    with pytest.raises(JobFailedError, match="record 900") as info:
        for _ in results:
            pass
    assert isinstance(info.value.__cause__, ValueError)
    assert job.status == "failed"


def test_iterating_a_cancelled_job_raises_job_cancelled() -> None:
    release = threading.Event()

    def held(x: int) -> int:
        release.wait(JOB_TIMEOUT)
        return x

    env = LocalEnvironment("collect-cancelled")
    results = env.from_batch(range(10)).map(held).collect()
    job = env.submit()
    job.cancel()
    release.set()
    with pytest.raises(JobCancelledError):
        list(results)


def test_results_before_submit_and_bad_capacity_are_refused() -> None:
    env = LocalEnvironment("collect-early")
    stream = env.from_batch([1])
    results = stream.collect()
    with pytest.raises(RuntimeError, match="submit the environment first"):
        list(results)
    with pytest.raises(PipelineError, match="capacity must be an int >= 1, got 0"):
        stream.collect(capacity=0)
    with pytest.raises(PipelineError, match="cannot be collected"):
        env.from_service("svc").collect()


def test_metrics_show_the_driver_reader() -> None:
    env = LocalEnvironment("collect-metrics")
    env.from_batch(range(300)).collect()
    job = env.submit(autostop=True)
    reader = job.metrics()["driver:collect"]
    assert (reader["kind"], reader["status"], reader["records_in"]) == ("collect", "finished", 300)


def test_testing_source_and_sink_in_parallel() -> None:
    out: list[int] = []
    env = LocalEnvironment("testing-kit")
    env.from_source(TestingSource, list(range(100)), parallelism=3).map(lambda x: x + 1).sink(TestingSink, out,
                                                                                                parallelism=2)
    env.submit(autostop=True)
    assert sorted(out) == list(range(1, 101))


def test_testing_source_stops_with_the_job_and_remembers_its_position() -> None:
    out: list[int] = []
    env = LocalEnvironment("testing-stop")
    env.from_source(TestingSource, list(range(10**7))).sink(TestingSink, out)
    job = env.submit()
    wait_until(lambda: len(out) > 100, JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert out == list(range(len(out))) and len(out) < 10**7
    source = TestingSource(["a", "b"])
    source.restore_state(1)
    source.open()
    assert (source.execute(), source.get_state()) == ("b", 2)


def test_wait_until_names_what_never_came() -> None:
    with pytest.raises(AssertionError, match="the answer"):
        wait_until(lambda: False, timeout=0.05, message="the answer never came")
