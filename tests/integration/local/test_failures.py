"""A user exception fails the job loudly; `on_error="skip"` counts and drops instead."""

from __future__ import annotations

import itertools
import traceback

import pytest

from sage.kernel import JobFailedError, LocalEnvironment
from sage.kernel.api.function import BatchFunction, FlatMapFunction, MapFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT, join_task_threads


class Boom(ValueError):
    pass


class FailOn(MapFunction):
    """Raises `Boom` on one record value, passes the others through."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def execute(self, data: int) -> int:
        if data == self.bad:
            explode(data)
        return data


def explode(data: int) -> None:
    raise Boom(f"bad record {data}")


def _assert_failed_by_boom(err: JobFailedError, task: str) -> None:
    assert err.task_name == task
    assert repr(task) in str(err) and "Boom" in str(err)
    cause = err.__cause__
    assert isinstance(cause, Boom) and str(cause) == "bad record 7"
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert frames[-2:] == ["execute", "explode"], frames


def test_wait_raises_naming_the_task_with_the_original_exception() -> None:
    env = LocalEnvironment("fails")
    counter = itertools.count()
    # An unbounded source upstream and a sink downstream: both must be cancelled.
    env.from_source(lambda: next(counter)).map(FailOn, 7).sink(TestingSink, [])
    job = env.submit()
    with pytest.raises(JobFailedError) as info:
        job.wait(JOB_TIMEOUT)
    _assert_failed_by_boom(info.value, "FailOn_0")
    assert job.status == "failed" and job.failed_task == "FailOn_0"
    statuses = join_task_threads(job)
    # A task the dispatcher had not started yet when the job failed is never started.
    assert statuses.pop("FailOn_0") == "failed"
    assert set(statuses.values()) <= {"cancelled"}
    assert "from_source_0" in statuses


def test_submit_autostop_raises_the_same_error() -> None:
    env = LocalEnvironment("fails-autostop")
    env.from_batch(range(100)).map(FailOn, 7, parallelism=2).sink(TestingSink, [])
    with pytest.raises(JobFailedError) as info:
        env.submit(autostop=True)
    _assert_failed_by_boom(info.value, "FailOn_1")  # instance 1 of 2 gets the odd positions


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


class RaiseUnprintable(MapFunction):
    def execute(self, data: int) -> int:
        raise Unprintable()


def test_an_exception_whose_str_raises_stays_the_cause_and_the_task_is_named() -> None:
    env = LocalEnvironment("unprintable")
    env.from_batch([1]).map(RaiseUnprintable).sink(TestingSink, [])
    with pytest.raises(JobFailedError) as info:
        env.submit(autostop=True)
    assert isinstance(info.value.__cause__, Unprintable)
    assert info.value.task_name == "RaiseUnprintable_0"
    message = str(info.value)
    assert "'RaiseUnprintable_0'" in message and "Unprintable: <message unavailable" in message


def test_failure_in_open_fails_the_job() -> None:
    class BadOpen(MapFunction):
        def open(self) -> None:
            raise RuntimeError("cannot connect")

        def execute(self, data: int) -> int:
            return data

    env = LocalEnvironment("bad-open")
    env.from_batch(range(10)).map(BadOpen).sink(TestingSink, [])
    with pytest.raises(JobFailedError, match="BadOpen_0") as info:
        env.submit(autostop=True)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_skip_counts_the_errors_and_drops_the_records() -> None:
    out: list[int] = []
    env = LocalEnvironment("skips")
    env.from_batch(range(1000)).map(lambda x: 100 // (x % 10), on_error="skip").sink(TestingSink, out)
    job = env.submit(autostop=True)
    assert job.status == "finished"
    assert sorted(out) == sorted(100 // (x % 10) for x in range(1000) if x % 10)
    map_metrics = job.metrics()["map_0"]
    assert map_metrics["errors"] == 100
    assert map_metrics["records_in"] == 1000 and map_metrics["records_out"] == 900


class EveryFifthFails(BatchFunction):
    """Returns 0..n-1, raising instead of returning every fifth record."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def execute(self) -> int | None:
        self.calls += 1
        if self.calls > self.n:
            return None
        if self.calls % 5 == 0:
            raise OSError(f"read {self.calls} failed")
        return self.calls


def test_skip_in_a_source_and_a_sink() -> None:
    seen: list[int] = []

    def sink(x: int) -> None:
        if x == 3:
            raise KeyError(x)
        seen.append(x)

    env = LocalEnvironment("skip-source-sink")
    env.from_batch(EveryFifthFails, 20, on_error="skip").sink(sink, on_error="skip")
    job = env.submit(autostop=True)
    assert seen == [x for x in range(1, 21) if x % 5 and x != 3]
    metrics = job.metrics()
    assert metrics["EveryFifthFails_0"]["errors"] == 4
    assert metrics["EveryFifthFails_0"]["records_out"] == 16
    assert metrics["sink_0"]["errors"] == 1


class SplitOrFail(FlatMapFunction):
    def execute(self, record: tuple[str, str]) -> None:
        self.collect((record[0], "first half"))
        if record[1] == "bad":
            raise ValueError(record)
        self.collect((record[0], "second half"))


def test_skip_drops_what_a_failing_flatmap_already_collected() -> None:
    out: list[tuple[str, str]] = []
    env = LocalEnvironment("skip-collected")
    records = [("c", "bad"), ("a", "ok"), ("b", "ok"), ("d", "bad")]
    env.from_batch(records).flatmap(SplitOrFail, on_error="skip").sink(TestingSink, out)
    job = env.submit(autostop=True)
    assert sorted(out) == [("a", "first half"), ("a", "second half"), ("b", "first half"), ("b", "second half")]
    assert job.metrics()["SplitOrFail_0"]["errors"] == 2
