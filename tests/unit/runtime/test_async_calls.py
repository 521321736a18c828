"""The pieces of async operators: build-time checks, emission order, the rate limiter, backoff, retries."""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import AsyncFlatMapFunction, AsyncMapFunction, MapFunction
from sage.kernel.runtime.async_calls.call_runner import CallRunner
from sage.kernel.runtime.async_calls.call_stats import CallStats
from sage.kernel.runtime.async_calls.completions import Completions
from sage.kernel.runtime.async_calls.policy import CallPolicy
from sage.kernel.runtime.async_calls.rate_limit import RateLimiter


async def call(x: Any) -> Any:
    return x


async def tokens(x: Any) -> AsyncIterator[Any]:
    yield x


class NoExecute(AsyncMapFunction):
    pass


class Caller:
    async def __call__(self, x: Any) -> Any:
        return x


@pytest.mark.parametrize(("settings", "message"), [
    ({"capacity": 0}, "capacity must be an int >= 1, got 0"),
    ({"capacity": 2.5}, "capacity must be an int >= 1"),
    ({"timeout": -1}, "timeout must be None or a finite number of seconds > 0, got -1"),
    ({"timeout": float("inf")}, "timeout must be None or a finite number"),
    ({"retries": -1}, "retries must be an int >= 0"),
    ({"backoff": float("nan")}, "backoff must be a finite number"),
    ({"retry_on": (ValueError, int)}, "retry_on must be an exception class or a tuple of them"),
    ({"retry_on": "ValueError"}, "retry_on must be an exception class"),
    ({"rate_limit": 0}, "rate_limit must be None or a finite number of calls per second > 0"),
    ({"ordered": "yes"}, "ordered must be True or False"),
])
def test_bad_settings_fail_when_the_operator_is_added(settings: dict[str, Any], message: str) -> None:
    stream = LocalEnvironment("bad").from_batch([1])
    with pytest.raises(PipelineError, match=f"map_async operator call: {message}"):
        stream.map_async(call, **settings)
    with pytest.raises(PipelineError, match=f"flatmap_async operator tokens: {message}"):
        stream.flatmap_async(tokens, **settings)


@pytest.mark.parametrize(("kind", "function", "message"), [
    ("map_async", lambda x: x, "expected a coroutine function .* use map\\(\\) for a plain function"),
    ("map_async", print, "expected a coroutine function"),
    ("map_async", tokens, "it is an async generator function: use flatmap_async"),
    ("map_async", NoExecute, "map_async operator NoExecute: the class does not define execute"),
    ("map_async", MapFunction, "map_async operator: MapFunction is not a AsyncMapFunction subclass"),
    ("map_async", 42, "expected a AsyncMapFunction subclass or a callable, got 42"),
    ("flatmap_async", call, "it is a coroutine function: use map_async"),
    ("flatmap_async", lambda x: [x], "expected an async generator function .* use flatmap\\(\\)"),
    ("flatmap_async", AsyncFlatMapFunction, "the class does not define execute"),
])
def test_a_function_of_the_wrong_kind_fails_when_the_operator_is_added(kind: str, function: Any,
                                                                       message: str) -> None:
    stream = LocalEnvironment("wrong").from_batch([1])
    with pytest.raises(PipelineError, match=message):
        getattr(stream, kind)(function)


def test_coroutine_callables_of_every_shape_are_accepted() -> None:
    stream = LocalEnvironment("shapes").from_batch([1])
    for function in (call, Caller(), functools.partial(call), Caller().__call__):
        stream.map_async(function)
    policy = stream.map_async(call, retry_on=ValueError).transformation.call_policy
    assert policy is not None and policy.retry_on == (ValueError,)


def drain(completions: Completions) -> list[tuple[Any, list[Any]]]:
    runs, errors = completions.take()
    assert errors == []
    return runs


def test_ordered_completions_wait_for_the_oldest_but_stream_its_outputs() -> None:
    completions = Completions(True, threading.Condition())
    a, b, c = (completions.open(name) for name in "abc")
    completions.finish(b, ["b1"])
    assert drain(completions) == [] and len(completions) == 3
    completions.add(a, "a1")  # the oldest streams at once
    assert drain(completions) == [("a", ["a1"])]
    completions.finish(a, ["a2"])
    assert drain(completions) == [("a", ["a2"]), ("b", ["b1"])] and len(completions) == 1
    completions.finish(c, error=ValueError("c failed"))
    runs, errors = completions.take()
    assert runs == [] and [str(e) for e in errors] == ["c failed"] and len(completions) == 0


def test_unordered_completions_come_as_they_finish() -> None:
    completions = Completions(False, threading.Condition())
    a, b = completions.open("a"), completions.open("b")
    completions.finish(b, ["b1"])
    completions.add(a, "a1")
    assert drain(completions) == [("b", ["b1"]), ("a", ["a1"])] and len(completions) == 1
    completions.finish(a)
    assert drain(completions) == [] and len(completions) == 0


def test_the_rate_limiter_spaces_attempts_and_counts_waits() -> None:
    async def starts() -> list[float]:
        limiter = RateLimiter(50.0)
        loop = asyncio.get_running_loop()
        times, waited = [], []
        for _ in range(5):
            waited.append(await limiter.acquire())
            times.append(loop.time())
        assert waited == [False, True, True, True, True]
        return times

    times = asyncio.run(starts())
    assert all(later - earlier >= 0.02 - 1e-3 for earlier, later in itertools.pairwise(times))


def test_backoff_doubles_with_jitter_between_half_and_one_and_a_half() -> None:
    policy = CallPolicy(backoff=0.1)
    assert [policy.backoff_delay(k, 0.0) for k in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert policy.backoff_delay(3, 0.999) == pytest.approx(0.2 * 2.998)


def test_the_runner_retries_retryable_errors_only_and_counts() -> None:
    attempts: list[str] = []

    async def flaky(errors: list[BaseException]) -> str:
        attempts.append("attempt")
        if errors:
            raise errors.pop(0)
        return "ok"

    stats = CallStats(1)
    runner = CallRunner(CallPolicy(retries=3, backoff=0.0, retry_on=(KeyError,)), stats)
    assert asyncio.run(runner.call(functools.partial(flaky, [KeyError("a"), KeyError("b")]))) == "ok"
    with pytest.raises(ValueError, match="not retryable"):
        asyncio.run(runner.call(functools.partial(flaky, [ValueError("not retryable")])))
    assert len(attempts) == 4
    assert (stats.completed, stats.failed, stats.retried, stats.in_flight) == (1, 1, 2, 0)
