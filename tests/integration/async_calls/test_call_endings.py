"""How a call's end by something other than a result or an Exception ends its record, and the task's hooks:
a CancelledError the operator did not ask for is the call's failure (the job never hangs on it), SystemExit and
KeyboardInterrupt fail the task whatever on_error says, a skipped failure is logged with its traceback, and a
cancel() during an async open() reports the task cancelled, not failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage.kernel import JobFailedError, LocalEnvironment
from sage.kernel.api.function import AsyncMapFunction
from sage.kernel.api.job import Job
from sage.kernel.api.service import BaseService
from sage.kernel.testing import wait_until

JOB_TIMEOUT = 60.0
"""Seconds a test waits for a job that ends at once when all is well (a hang fails the test, never blocks it)."""

UNASKED = "ended with asyncio.CancelledError although the operator did not cancel it"


def failure_of(name: str, records: int, function: Any, **settings: Any) -> tuple[Job, JobFailedError]:
    """A job of `records` numbers through `map_async(function, **settings)` that must fail, and its error."""
    env = LocalEnvironment(name)
    env.from_batch(range(records)).map_async(function, **settings).sink(lambda x: None)
    job = env.submit()
    with pytest.raises(JobFailedError) as failure:
        job.wait(JOB_TIMEOUT)
    return job, failure.value


async def cancels_itself(x: int) -> int:
    if x == 3:
        raise asyncio.CancelledError("a library's own cancellation")
    return x


async def yields_then_cancels(x: int) -> AsyncIterator[int]:
    yield x
    if x == 3:
        raise asyncio.CancelledError("the stream was cancelled elsewhere")
    yield x * 10


def test_a_call_ending_with_a_cancelled_error_of_its_own_fails_the_job_naming_it() -> None:
    _, failure = failure_of("cancelled-fails", 6, cancels_itself)
    assert failure.task_name == "cancels_itself_0"
    cause = failure.__cause__
    assert isinstance(cause, RuntimeError) and UNASKED in str(cause)
    assert isinstance(cause.__cause__, asyncio.CancelledError)


@pytest.mark.parametrize("kind", ["map_async", "flatmap_async"])
def test_with_skip_such_a_call_is_counted_and_dropped_and_the_job_finishes(kind: str) -> None:
    function: Any = cancels_itself if kind == "map_async" else yields_then_cancels
    env = LocalEnvironment("cancelled-skipped")
    results = getattr(env.from_batch(range(6)), kind)(function, on_error="skip").collect()
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    if kind == "map_async":
        assert list(results) == [0, 1, 2, 4, 5]
    else:  # what the stream yielded before it ended stays
        assert list(results) == [y for x in range(6) for y in ((x,) if x == 3 else (x, x * 10))]
    metrics = job.metrics()[f"{function.__name__}_0"]
    assert metrics["errors"] == 1
    assert (metrics["async"]["failed"], metrics["async"]["in_flight"]) == (1, 0)


class Slow(BaseService):
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def process(self, key: str) -> str:
        self.release.wait(JOB_TIMEOUT)
        return key.upper()


async def awaited(future: Any) -> Any:
    return await future


class Coalesced(AsyncMapFunction):
    """Records 0 and 1 share one service future; record 0 gives up on it (cancelling it, as asyncio's wrap_future
    does), so record 1's await ends with a CancelledError it never asked for."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.shared: Any = None
        self.joined: asyncio.Event | None = None

    async def execute(self, x: int) -> str:
        if x == 0:
            self.joined = asyncio.Event()
            self.shared = self.call_service_async("slow", "hot", timeout=JOB_TIMEOUT)
            waiting = asyncio.create_task(awaited(self.shared))
            await self.joined.wait()
            waiting.cancel()  # e.g. its own timeout: the shared future is cancelled with it
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            assert self.shared.cancelled()
            self.release.set()
            return "gave up"
        if x == 1:
            assert self.joined is not None
            self.joined.set()
            return str(await self.shared)
        return str(await self.call_service_async("slow", f"k{x}", timeout=JOB_TIMEOUT))


def test_a_shared_service_future_cancelled_by_another_call_fails_only_the_call_awaiting_it() -> None:
    release = threading.Event()
    env = LocalEnvironment("shared-future")
    env.register_service("slow", Slow, release)
    results = env.from_batch(range(4)).map_async(Coalesced, release, on_error="skip").collect()
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert list(results) == ["gave up", "K2", "K3"]
    assert job.metrics()["Coalesced_0"]["errors"] == 1


@pytest.mark.parametrize(("error", "on_error"), [(SystemExit(3), "skip"), (KeyboardInterrupt(), "skip"),
                                                 (SystemExit(3), "fail")])
def test_system_exit_or_keyboard_interrupt_in_a_call_fails_the_task_whatever_on_error_says(
        error: BaseException, on_error: str) -> None:
    async def exits(x: int) -> int:
        if x == 2:
            raise error
        return x

    job, failure = failure_of("exit-in-call", 6, exits, on_error=on_error)
    assert failure.task_name == "exits_0"
    chain = [failure.__cause__, getattr(failure.__cause__, "__cause__", None)]
    assert error in chain and any(isinstance(e, RuntimeError) and "which an async call may not raise" in str(e)
                                  for e in chain)
    assert job.metrics()["exits_0"]["async"]["failed"] == 1


async def exits_in_a_task_of_its_own(x: int) -> int:
    async def inner() -> int:
        await asyncio.sleep(0)
        if x == 2:
            raise SystemExit(3)
        return x

    return await asyncio.wait_for(inner(), JOB_TIMEOUT)  # runs `inner` as an asyncio task of its own


def test_system_exit_from_a_task_a_call_started_fails_the_task_instead_of_leaving_it_hanging() -> None:
    # asyncio lets it out of the event loop itself (not out of the call): the loop ends with every call in it.
    _, failure = failure_of("exit-in-subtask", 6, exits_in_a_task_of_its_own, timeout=JOB_TIMEOUT, on_error="skip")
    cause = failure.__cause__
    assert isinstance(cause, RuntimeError) and "raised SystemExit(3)" in str(cause)
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "sage-loop-exits_in_a_task_of_its_own_0"],
               JOB_TIMEOUT)


class ExitsInOpen(AsyncMapFunction):
    async def open(self) -> None:
        raise SystemExit(4)

    async def execute(self, x: int) -> int:
        return x


def test_system_exit_in_an_async_open_fails_the_task() -> None:
    cause = failure_of("exit-in-open", 3, ExitsInOpen)[1].__cause__
    assert isinstance(cause, RuntimeError) and "ExitsInOpen.open() raised SystemExit(4)" in str(cause)


def fails_deep_inside(x: int) -> int:
    raise ValueError(f"bad record {x}")


async def parse(x: int) -> int:
    await asyncio.sleep(0)
    return fails_deep_inside(x)


def test_a_skipped_call_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    env = LocalEnvironment("skip-logged")
    env.from_batch([1]).map_async(parse, on_error="skip").sink(lambda x: None)
    with caplog.at_level(logging.WARNING, logger="sage.kernel.runtime.task.task"):
        env.submit(autostop=True)
    [record] = [r for r in caplog.records if "skipped a record" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "in fails_deep_inside" in caplog.text and "NoneType: None" not in caplog.text


class OpensForever(AsyncMapFunction):
    def __init__(self, opening: threading.Event) -> None:
        self.opening = opening

    async def open(self) -> None:
        self.opening.set()
        await asyncio.sleep(JOB_TIMEOUT * 10)  # a model server that never accepts the connection

    async def execute(self, x: int) -> int:
        return x


def test_cancel_during_an_async_open_reports_the_task_cancelled_not_failed(caplog: pytest.LogCaptureFixture) -> None:
    opening = threading.Event()
    env = LocalEnvironment("cancel-in-open")
    env.from_batch(range(10)).map_async(OpensForever, opening).sink(lambda x: None)
    job = env.submit()
    assert opening.wait(JOB_TIMEOUT)
    job.cancel()
    assert job.wait(JOB_TIMEOUT) == "cancelled"
    # The task sees the cancel within its wait's check interval: no event tells when.
    wait_until(lambda: job.metrics()["OpensForever_0"]["status"] != "running", JOB_TIMEOUT)
    assert job.metrics()["OpensForever_0"]["status"] == "cancelled"
    assert "failed" not in caplog.text
