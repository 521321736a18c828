"""Awaiting a service never blocks the operator's event loop: while the service's request queue is full, the
instance's other calls go on, and the requests waiting for room reach the service in the order they were made."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sage.kernel import JobFailedError, LocalEnvironment
from sage.kernel.api.function import AsyncMapFunction
from sage.kernel.api.service import BaseService

JOB_TIMEOUT = 60.0
"""Seconds a test waits for what happens at once when all is well."""

CALLS = 40


class Held(BaseService):
    """Answers only once released, noting the order in which requests reach it (max_concurrency=1: in queue order)."""

    def __init__(self, release: threading.Event, seen: list[int]) -> None:
        self.release = release
        self.seen = seen

    def process(self, x: int) -> int:
        self.release.wait(JOB_TIMEOUT)
        self.seen.append(x)
        return x


class Mixed(AsyncMapFunction):
    """Even records await the held service; odd ones are a call that needs nothing but the event loop."""

    async def execute(self, x: int) -> int:
        if x % 2 == 0:
            result: int = await self.call_service_async("held", x, timeout=JOB_TIMEOUT)
            return result
        await asyncio.sleep(0)
        return x


def test_a_full_request_queue_blocks_neither_the_loop_nor_the_order_of_requests() -> None:
    release, seen = threading.Event(), []
    env = LocalEnvironment("awaiting-held", config={"service_queue_maxsize": 1})
    env.register_service("held", Held, release, seen)
    results = env.from_batch(range(CALLS)).map_async(Mixed, capacity=CALLS, ordered=False).collect()
    job = env.submit()
    out = []
    for x in results:
        out.append(x)
        if len(out) == CALLS // 2:
            # Every odd call is done while the service holds one request, one more fills its queue and the
            # others wait for room: nothing of that stood in the event loop's way.
            assert sorted(out) == list(range(1, CALLS, 2))
            release.set()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert sorted(out) == list(range(CALLS))
    assert seen == list(range(0, CALLS, 2))  # in the order the calls were made
    assert job.metrics()["Mixed_0"]["async"]["completed"] == CALLS


class Stalled(BaseService):
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def process(self, x: int) -> int:
        self.release.wait(JOB_TIMEOUT)
        return x


class Impatient(AsyncMapFunction):
    async def execute(self, x: int) -> str:
        try:
            return str(await self.call_service_async("stalled", x, timeout=0.5))
        except TimeoutError:
            return "timed out"


def test_a_request_that_never_finds_room_fails_its_call_with_a_timeout() -> None:
    release = threading.Event()
    env = LocalEnvironment("awaiting-stalled", config={"service_queue_maxsize": 1})
    env.register_service("stalled", Stalled, release)
    results = env.from_batch(range(6)).map_async(Impatient, capacity=6).collect()
    job = env.submit()
    out = []
    for answer in results:
        out.append(answer)
        if len(out) == 6:
            release.set()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert out == ["timed out"] * 6


class Counted(BaseService):
    def process(self, x: int) -> int:
        return x


class BlocksItsLoop(AsyncMapFunction):
    async def execute(self, x: int) -> int:
        result: int = self.call_service("counted", x, timeout=JOB_TIMEOUT)
        return result


def test_a_blocking_service_call_from_a_coroutine_fails_naming_the_awaitable_one() -> None:
    env = LocalEnvironment("blocking-in-coroutine")
    env.register_service("counted", Counted)
    env.from_batch([1]).map_async(BlocksItsLoop).sink(lambda x: None)
    job = env.submit()
    with pytest.raises(JobFailedError) as failure:
        job.wait(JOB_TIMEOUT)
    cause = failure.value.__cause__
    assert isinstance(cause, RuntimeError) and "await self.call_service_async" in str(cause)
