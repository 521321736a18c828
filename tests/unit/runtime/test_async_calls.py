"""The pieces of async operators: build-time checks (async code where nothing awaits it included), emission
order, output bounds, the rate limiter, backoff, retries, how a call's BaseException ends it, asyncio loaded only
where used."""

from __future__ import annotations

import asyncio
import functools
import itertools
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import AsyncFlatMapFunction, AsyncMapFunction, CoMapFunction, MapFunction
from sage.kernel.api.service import BaseService, batch
from sage.kernel.runtime.async_calls.call_runner import CallRunner
from sage.kernel.runtime.async_calls.call_stats import CallStats
from sage.kernel.runtime.async_calls.completions import Completions
from sage.kernel.runtime.async_calls.policy import AttemptTimeout, CallPolicy
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
    ({"retry_on": (ValueError, int)}, "retry_on must be an Exception subclass or a tuple of them"),
    ({"retry_on": "ValueError"}, "retry_on must be an Exception subclass"),
    ({"retry_on": KeyboardInterrupt}, "retry_on must be an Exception subclass .* KeyboardInterrupt and SystemExit "
                                      "are never retried"),
    ({"retry_on": (ValueError, asyncio.CancelledError)}, "retry_on must be an Exception subclass"),
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
    ("map_async", MapFunction, "map_async operator: MapFunction is not an AsyncMapFunction subclass"),
    ("map_async", 42, "expected an AsyncMapFunction subclass or a callable, got 42"),
    ("map_async", lambda x: x, "^map_async operator: expected a coroutine function"),  # no name to give
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
    completions = Completions(True, threading.Condition(), 100)
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
    completions = Completions(False, threading.Condition(), 100)
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


def test_a_cancelled_error_the_operator_did_not_ask_for_fails_the_call_unretried_and_counted() -> None:
    attempts: list[int] = []

    async def awaits_a_cancelled_task() -> None:
        attempts.append(1)
        other = asyncio.ensure_future(asyncio.sleep(60))
        other.cancel()  # something else cancels what the call awaits
        await other

    stats = CallStats(1)
    runner = CallRunner(CallPolicy(retries=3, backoff=0.0, retry_on=(Exception,)), stats)
    with pytest.raises(RuntimeError, match=r"ended with asyncio\.CancelledError although the operator did not "
                                           r"cancel it") as failure:
        asyncio.run(runner.call(awaits_a_cancelled_task))
    assert isinstance(failure.value.__cause__, asyncio.CancelledError)
    assert len(attempts) == 1  # never retried
    assert (stats.failed, stats.retried, stats.in_flight) == (1, 0, 0)


def test_the_operators_own_cancellation_propagates_uncounted() -> None:
    async def cancel_a_call() -> None:
        running = asyncio.Event()
        stats = CallStats(1)
        runner = CallRunner(CallPolicy(retries=3, backoff=0.0), stats)

        async def forever() -> None:
            running.set()
            await asyncio.sleep(60)

        call = asyncio.ensure_future(runner.call(forever))
        await running.wait()
        call.cancel()  # as the operator's release() does
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (stats.failed, stats.completed, stats.in_flight) == (0, 0, 0)

    asyncio.run(cancel_a_call())


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_system_exit_and_keyboard_interrupt_fail_the_call_as_they_are(error: BaseException) -> None:
    async def raises() -> None:
        raise error

    stats = CallStats(1)
    runner = CallRunner(CallPolicy(retries=3, backoff=0.0, retry_on=(Exception,)), stats)

    async def call() -> BaseException | None:
        try:
            await runner.call(raises)
        except BaseException as exc:  # as the operator catches it: the event loop must go on
            return exc
        return None

    assert asyncio.run(call()) is error
    assert (stats.failed, stats.retried, stats.in_flight) == (1, 0, 0)


def test_only_the_operators_own_timeout_is_always_retried() -> None:
    attempts: list[str] = []

    async def own_timeout() -> None:
        attempts.append("own")
        raise TimeoutError("the client's own timeout")

    async def stalls() -> None:
        attempts.append("stall")
        await asyncio.sleep(60)

    stats = CallStats(1)
    runner = CallRunner(CallPolicy(timeout=0.05, retries=2, backoff=0.0, retry_on=()), stats)
    with pytest.raises(TimeoutError, match="the client's own timeout"):
        asyncio.run(runner.call(own_timeout))
    with pytest.raises(AttemptTimeout, match="attempt 3 of 3"):
        asyncio.run(runner.call(stalls))
    assert attempts == ["own", "stall", "stall", "stall"]
    assert (stats.timed_out, stats.retried, stats.failed) == (3, 2, 2)


def test_a_slot_full_of_outputs_makes_its_call_wait_until_they_are_taken() -> None:
    async def stream() -> None:
        completions = Completions(True, threading.Condition(), 3)
        slot = completions.open("a")
        assert completions.add(slot, 1) is None and completions.add(slot, 2) is None
        room = completions.add(slot, 3)  # the third output fills the slot
        assert room is not None and not room.done()
        runs = await asyncio.to_thread(drain, completions)  # the task thread takes them
        assert runs == [("a", [1, 2, 3])]
        await asyncio.wait_for(room, 30)  # and lets the call go on
        assert completions.add(slot, 4) is None

    asyncio.run(stream())


class AsyncExecute(MapFunction):
    async def execute(self, x: Any) -> Any:  # type: ignore[override]
        return x


class AsyncOpen(MapFunction):
    async def open(self) -> None:  # type: ignore[override]
        pass

    def execute(self, x: Any) -> Any:
        return x


class AsyncComap(CoMapFunction):
    def map0(self, x: Any) -> Any:
        return x

    async def map1(self, x: Any) -> Any:
        return x


@pytest.mark.parametrize(("build", "message"), [
    (lambda s: s.map(call), "map operator call: it is a coroutine function .* use map_async"),
    (lambda s: s.map(Caller()), "map operator: Caller.__call__ is a coroutine function .* use map_async"),
    (lambda s: s.map(functools.partial(call)), "map operator: it is a coroutine function"),
    (lambda s: s.map(AsyncExecute), "map operator AsyncExecute: AsyncExecute.execute is a coroutine function .* "
                                    "use map_async"),
    (lambda s: s.map(AsyncOpen), "map operator AsyncOpen: AsyncOpen.open is a coroutine function .* make it a "
                                 "plain method"),
    (lambda s: s.flatmap(tokens), "flatmap operator tokens: it is an async generator function, .* use flatmap_async"),
    (lambda s: s.flatmap(call), "flatmap operator call: .* use map_async .* or flatmap_async"),
    (lambda s: s.filter(call), "filter operator call: it is a coroutine function .*, which filter calls without "
                               "awaiting; make it a plain function, or await the async work in a map_async"),
    (lambda s: s.sink(call), "sink operator call: .* which sink calls without awaiting"),
    (lambda s: s.keyby(call), "keyby operator call: .* which keyby calls without awaiting"),
    (lambda s: s.connect(s).comap(AsyncComap), "comap operator AsyncComap: AsyncComap.map1 is a coroutine function"),
])
def test_async_code_given_to_an_operator_that_does_not_await_fails_when_it_is_added(build: Any,
                                                                                   message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        build(LocalEnvironment("not-awaited").from_batch([1]))


def test_an_async_source_fails_when_it_is_added() -> None:
    async def poll() -> int:
        return 1

    with pytest.raises(PipelineError, match="from_source operator poll: it is a coroutine function") as failure:
        LocalEnvironment("async-source").from_source(poll)
    assert "do the async work in a map_async after the source" in str(failure.value)  # nothing comes before it


class AsyncService(BaseService):
    async def lookup(self, x: Any) -> Any:
        return x


def test_a_service_with_an_async_method_fails_when_it_is_registered() -> None:
    with pytest.raises(PipelineError, match=r"register_service 'svc': AsyncService\.lookup is async, but a service's "
                                            r"methods run on its threads and are called without awaiting"):
        LocalEnvironment("async-service").register_service("svc", AsyncService)


def test_batch_on_an_async_method_fails_when_the_class_is_written() -> None:
    with pytest.raises(PipelineError, match=r"@batch: .*embed is async, but a batched method runs on the service's "
                                            r"threads"):
        class Embedder(BaseService):
            @batch(max_batch_size=4)
            async def embed(self, texts: list[str]) -> list[int]:
                return [len(t) for t in texts]


PROBE = """
import sys
from sage.kernel import LocalEnvironment
async def call(x):
    return x
env = LocalEnvironment("probe")
stream = env.from_batch([1, 2]).map(lambda x: x)
stream = stream.map_async(call) if sys.argv[1] == "async" else stream
results = stream.collect()
env.submit(autostop=True)
print(list(results), "asyncio" in sys.modules)
"""


@pytest.mark.parametrize(("kind", "loaded"), [("sync", False), ("async", True)])
def test_asyncio_loads_only_in_a_process_that_runs_an_async_task(kind: str, loaded: bool) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, kind], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[1, 2] {loaded}"
