"""One record's call under its operator's policy: rate limit, timeout per attempt, retries with backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .call_stats import CallStats
from .cancellation import cancelled_by_us, unasked
from .policy import AttemptTimeout, CallPolicy
from .rate_limit import RateLimiter

T = TypeVar("T")


class CallRunner:
    """Makes the calls of one operator instance, on its event loop, and counts them in `stats`.

    Every attempt first waits for the rate limit (if any), then runs within
    the policy's timeout. A failed attempt is retried while retries remain
    and its error is retryable (see `CallPolicy`), after a backoff with
    jitter. The operator's own cancellation (`asyncio.CancelledError` while
    the running task is being cancelled) is never retried nor counted: it
    ends the call at once. A `CancelledError` nobody asked for (something
    the call awaited was cancelled elsewhere) fails the call, unretried,
    with a `RuntimeError` (see `cancellation`); `KeyboardInterrupt` and
    `SystemExit` fail it too, and propagate as they are.
    """

    def __init__(self, policy: CallPolicy, stats: CallStats) -> None:
        self.policy = policy
        self.stats = stats
        self._limiter = RateLimiter(policy.rate_limit) if policy.rate_limit is not None else None
        self._jitter = random.Random()

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """The result of the first attempt that succeeds (`attempt()` makes one).

        Raises the last attempt's exception when retries run out or it is not
        retryable; an attempt that ran out of time raises `AttemptTimeout`
        (a `TimeoutError`) saying which attempt and how long it had.
        """
        return await self._retrying(lambda number: self._timed(attempt, number, "call"), lambda: True)

    async def stream(self, attempt: Callable[[], AsyncIterator[T]],
                     emit: Callable[[T], Awaitable[None] | None]) -> None:
        """Pass every record of an async iterator (`attempt()` makes one) to `emit` as it comes.

        When `emit` returns an awaitable (the records emitted wait to be
        taken), the iterator is not advanced until it is done: backpressure.
        The timeout bounds the wait for each next record, not that wait. An
        attempt is retried only while it has not emitted anything: records
        already emitted cannot be taken back, so a failure after the first
        one raises (the records emitted so far stay emitted).
        """
        emitted = False

        async def one(number: int) -> None:
            nonlocal emitted
            iterator = attempt()
            try:
                while True:
                    try:
                        item = await self._timed(lambda: anext(iterator), number, "next record")
                    except StopAsyncIteration:
                        return
                    room = emit(item)
                    emitted = True
                    if room is not None:
                        await room
            finally:
                aclose = getattr(iterator, "aclose", None)  # an async generator: run its finally blocks now
                if aclose is not None:
                    await aclose()

        await self._retrying(one, lambda: not emitted)

    async def _retrying(self, attempt: Callable[[int], Awaitable[T]], may_retry: Callable[[], bool]) -> T:
        stats = self.stats
        stats.in_flight += 1
        try:
            return await self._attempts(attempt, may_retry)
        except asyncio.CancelledError as exc:
            if cancelled_by_us():
                raise
            stats.failed += 1
            raise unasked("the call", exc) from exc
        except BaseException:
            stats.failed += 1
            raise
        finally:
            stats.in_flight -= 1

    async def _attempts(self, attempt: Callable[[int], Awaitable[T]], may_retry: Callable[[], bool]) -> T:
        policy, stats = self.policy, self.stats
        loop = asyncio.get_running_loop()
        started: float | None = None
        number = 1
        while True:
            if self._limiter is not None and await self._limiter.acquire():
                stats.rate_limited_waits += 1
            if started is None:
                started = loop.time()
            try:
                result = await attempt(number)
            except Exception as exc:
                if number > policy.retries or not policy.retryable(exc) or not may_retry():
                    raise
                stats.retried += 1
                await asyncio.sleep(policy.backoff_delay(number, self._jitter.random()))
                number += 1
                continue
            stats.completed += 1
            stats.latency.add(loop.time() - started)
            return result

    async def _timed(self, attempt: Callable[[], Awaitable[Any]], number: int, what: str) -> Any:
        timeout = self.policy.timeout
        if timeout is None:
            return await attempt()
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await attempt()
        except TimeoutError as exc:
            if not scope.expired():  # the function's own TimeoutError, not our limit
                raise
            self.stats.timed_out += 1
            raise AttemptTimeout(f"{what} timed out after {timeout} s (attempt {number} of "
                                 f"{self.policy.retries + 1})") from exc
