"""@batch services: requests of parallel callers grouped into one call, each caller its own answer or error."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService, batch

from .support import run_probes

CALLERS = 8
CALLS = 400


class Embedder(BaseService):
    """Embeds a batch at a time (slowly, as a model on a GPU would); an item divisible by 13 is its caller's error."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen
        self.lock = threading.Lock()

    @batch(max_batch_size=8, max_wait=0.05)
    def process(self, items: list[int]) -> list[Any]:
        with self.lock:
            self.seen.append(len(items))
        time.sleep(0.005)  # the model's work for one batch: callers queue up meanwhile
        return [ValueError(f"cannot embed {x}") if x % 13 == 0 else [x, x * x] for x in items]


class Caller(MapFunction):
    def execute(self, x: int) -> tuple[int, Any]:
        try:
            return x, self.call_service("embedder", x, timeout=30)
        except ValueError as exc:
            return x, str(exc)


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_parallel_callers_are_batched_and_each_gets_its_own_answer_or_error(max_concurrency: int) -> None:
    seen: list[int] = []
    env = LocalEnvironment("batching")
    env.register_service("embedder", Embedder, seen, max_concurrency=max_concurrency)
    results = env.from_batch(range(CALLS)).map(Caller, parallelism=CALLERS).collect()
    job = env.submit(autostop=True)
    assert sorted(results) == [(x, f"cannot embed {x}" if x % 13 == 0 else [x, x * x]) for x in range(CALLS)]
    assert sum(seen) == CALLS and max(seen) > 1  # grouped under load
    metrics = job.metrics()["service:embedder"]
    batches = metrics["batches"]["process"]
    assert (batches["requests"], batches["batches"]) == (CALLS, len(seen))
    assert sum(batches["sizes"].values()) == len(seen) and max(batches["sizes"]) <= 8
    assert batches["mean_size"] > 1 and batches["queue_delay_p99"] is not None
    assert metrics["calls"] == CALLS and metrics["errors"] == len(range(0, CALLS, 13))


class Strict(BaseService):
    """A batch with a negative item raises; `short` returns one result too few."""

    @batch(max_batch_size=16, max_wait=0.2)
    def process(self, items: list[int]) -> list[int]:
        if any(x < 0 for x in items):
            raise RuntimeError("a negative item spoils the batch")
        return items

    @batch(max_batch_size=16, max_wait=0.2)
    def short(self, items: list[int]) -> list[int]:
        return items[1:]

    def echo(self, item: int) -> int:
        return item  # not batched: one call per request, as usual


def send_together(fn: MapFunction, method: str, items: list[int]) -> list[BaseException]:
    """Send every item at once (they share a batch), then collect each call's exception."""
    futures = [fn.call_service_async("strict", x, method=method, timeout=30) for x in items]
    errors = [future.exception(timeout=30) for future in futures]
    assert all(error is not None for error in errors)
    return [error for error in errors if error is not None]


@pytest.mark.parametrize(("method", "error", "message"), [
    ("process", RuntimeError, "a negative item spoils the batch"),
    ("short", ValueError, "batched method 'short' of service 'strict' returned"),
])
def test_a_failing_batch_fails_each_of_its_requests_with_its_own_exception(method: str, error: type,
                                                                           message: str) -> None:
    env = LocalEnvironment("strict")
    env.register_service("strict", Strict)
    [outcome] = run_probes(env, lambda fn, _: send_together(fn, method, [1, -2, 3, 4]))
    assert outcome.raised is None, outcome.raised
    errors = outcome.value
    assert [type(e) for e in errors] == [error] * 4 and all(message in str(e) for e in errors)
    assert len({id(e) for e in errors}) == 4  # every caller its own object (notes are added per call)


def test_a_batched_method_takes_exactly_one_argument_per_call_and_others_work_as_usual() -> None:
    env = LocalEnvironment("misfit")
    env.register_service("strict", Strict)

    def body(fn: MapFunction, _: Any) -> Any:
        with pytest.raises(TypeError, match="is batched: call it with exactly one positional argument"):
            fn.call_service("strict", 1, 2, timeout=30)
        return fn.call_service("strict", 5, timeout=30), fn.call_service("strict", 6, method="echo", timeout=30)

    [outcome] = run_probes(env, body)
    assert outcome.raised is None and outcome.value == (5, 6)


@pytest.mark.parametrize(("decorator", "message"), [
    (lambda: batch(max_batch_size=0), "max_batch_size must be an int >= 1"),
    (lambda: batch(max_wait=-1.0), "max_wait must be a finite number"),
    (lambda: batch(max_wait=float("nan")), "max_wait must be a finite number"),
    (lambda: batch(lambda self, items: items), "@batch needs parentheses"),
])
def test_bad_batch_settings_fail_when_the_class_is_written(decorator: Any, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        decorator()


WORKERS = 4
BARRIER_WAIT = 60.0
"""Seconds a call waits at the barrier for the others: only if they never run beside it does it give up."""


class Meets(BaseService):
    """Every call (of `lookup`) or batch (of `small`) waits at a barrier of WORKERS: they must all run at once."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(WORKERS)

    def lookup(self, x: int) -> int:
        self.barrier.wait(BARRIER_WAIT)
        return x

    @batch(max_batch_size=2, max_wait=BARRIER_WAIT)  # only full batches: 2 * WORKERS calls make WORKERS of them
    def small(self, items: list[int]) -> list[int]:
        self.barrier.wait(BARRIER_WAIT)
        return items

    @batch(max_batch_size=32, max_wait=0.01)
    def big(self, items: list[int]) -> list[int]:
        return items


class CallsAtOnce(MapFunction):
    def execute(self, x: tuple[str, int]) -> int:
        method, value = x
        result: int = self.call_service("meets", value, method=method, timeout=BARRIER_WAIT * 2)
        return result


@pytest.mark.parametrize(("method", "calls"), [("lookup", WORKERS), ("small", 2 * WORKERS)])
def test_a_batching_service_runs_calls_and_batches_on_all_its_workers_at_once(method: str, calls: int) -> None:
    # One worker reads many requests at a time (a batch's worth); the others must still get their share.
    env = LocalEnvironment("batching-workers")
    env.register_service("meets", Meets, max_concurrency=WORKERS)
    out = env.from_batch([(method, x) for x in range(calls)]).map(CallsAtOnce, parallelism=calls).collect()
    job = env.submit(autostop=True)
    assert sorted(out) == list(range(calls))
    assert job.metrics()["service:meets"]["errors"] == 0  # no barrier broke
