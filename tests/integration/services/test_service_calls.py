"""Calling services: results, methods, async futures, service-to-service calls, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService

from .support import AT_ONCE, run_probe, run_probes

CALLS = 1000


class Calc(BaseService):
    def process(self, x: int) -> int:
        return x * x + 1

    def scale(self, x: int, factor: int = 1) -> tuple[int, int]:
        return x, x * factor


def three_ways(fn: MapFunction, k: int) -> dict[str, int]:
    """`CALLS` sync, method and async calls, each checked against its own argument."""
    base = k * 1_000_000
    wrong = 0
    for i in range(base, base + CALLS):
        wrong += fn.call_service("calc", i) != i * i + 1
        wrong += fn.call_service("calc", i, method="scale", factor=k + 2, timeout=10.0) != (i, i * (k + 2))
    futures = {i: fn.call_service_async("calc", i) for i in range(base, base + CALLS)}
    wrong += sum(future.result(timeout=30) != i * i + 1 for i, future in futures.items())
    return {"wrong": wrong, "caller_calls": fn.ctx.service_caller.calls}


def test_sync_async_and_method_calls_from_three_parallel_instances() -> None:
    env = LocalEnvironment("calls")
    env.register_service("calc", Calc)
    outcomes = run_probes(env, three_ways, records=[0, 1, 2], parallelism=3)
    assert [o.raised for o in outcomes] == [None, None, None]
    assert sorted(o.task for o in outcomes) == ["Probe_0", "Probe_1", "Probe_2"]
    for outcome in outcomes:
        assert outcome.value == {"wrong": 0, "caller_calls": 3 * CALLS}
    service = env._job.metrics()["service:calc"]
    assert service["calls"] == 9 * CALLS
    assert service["errors"] == 0
    assert service["expired"] == 0
    assert 0 < service["latency_p50"] <= service["latency_p99"]


class Frontend(BaseService):
    """Answers by asking another service, synchronously and asynchronously."""

    def process(self, x: int) -> tuple[int, int]:
        return self.call_service("calc", x), self.call_service_async("calc", x + 1).result(timeout=10)


def test_a_service_calls_another_service() -> None:
    env = LocalEnvironment("service-to-service")
    env.register_service("calc", Calc)
    env.register_service("front", Frontend)
    outcome = run_probe(env, lambda fn, _: [fn.call_service("front", x) for x in range(5)])
    assert outcome.raised is None
    assert outcome.value == [(x * x + 1, (x + 1) ** 2 + 1) for x in range(5)]
    metrics = env._job.metrics()
    assert metrics["service:front"]["calls"] == 5
    assert metrics["service:calc"]["calls"] == 10


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda fn: fn.call_service("nope", 1, timeout=10 * AT_ONCE), KeyError, ["'nope'", "registered: calc"]),
        (lambda fn: fn.call_service_async("nope", 1), KeyError, ["'nope'"]),
        (lambda fn: fn.call_service("calc", 1, method="lookup", timeout=10 * AT_ONCE), AttributeError,
         ["'calc'", "'lookup'", "process, scale"]),
        # Hooks and private names are not methods callers may name.
        (lambda fn: fn.call_service("calc", method="cleanup"), AttributeError, ["'cleanup'"]),
        (lambda fn: fn.call_service("calc", method="_secret"), AttributeError, ["'_secret'"]),
    ],
    ids=["unknown-service", "unknown-service-async", "unknown-method", "hook", "private"],
)
def test_unknown_service_or_method_raises_at_once(call: Any, error: type, words: list[str]) -> None:
    env = LocalEnvironment("unknown")
    env.register_service("calc", Calc)
    outcome = run_probe(env, lambda fn, _: call(fn))
    assert type(outcome.raised) is error
    for word in words:
        assert word in str(outcome.raised)
    assert outcome.seconds < AT_ONCE
    assert env._job.metrics()["service:calc"]["calls"] == 0


class Recursive(BaseService):
    def process(self, x: int) -> Any:
        return self.call_service("recursive", x, method="leaf", timeout=10 * AT_ONCE)

    def leaf(self, x: int) -> int:
        return x


def test_a_synchronous_self_call_with_max_concurrency_1_raises_at_once() -> None:
    env = LocalEnvironment("self-call")
    env.register_service("recursive", Recursive)
    outcome = run_probe(env, lambda fn, _: fn.call_service("recursive", 7, timeout=10 * AT_ONCE))
    assert type(outcome.raised) is RuntimeError
    assert "'recursive' calls itself synchronously with max_concurrency=1" in str(outcome.raised)
    assert outcome.seconds < AT_ONCE


def test_a_self_call_with_max_concurrency_2_is_answered() -> None:
    env = LocalEnvironment("self-call-2")
    env.register_service("recursive", Recursive, max_concurrency=2)
    outcome = run_probe(env, lambda fn, _: fn.call_service("recursive", 7))
    assert outcome.raised is None
    assert outcome.value == 7
