"""map_async against a real HTTP server: many calls in flight, exact output in order or exactly once,
keys kept, the class form with async hooks, awaited service calls, service pipelines, metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import AsyncMapFunction, MapFunction
from sage.kernel.api.service import BaseService
from sage.kernel.testing import wait_until

from .support import ModelServer, http_get

N = 1000
CALL_SECONDS = 0.05
BOUND = 10.0
"""Seconds 1,000 calls of 50 ms with 64 in flight may take: about 0.8 s ideally, 50 s one at a time. Generous
on purpose (a loaded 2-core machine), and still far from the sequential time."""


def fetch_from(port: int) -> Any:
    async def fetch(x: int) -> str:
        return await http_get(port, f"/echo?x={x}")
    return fetch


def test_a_thousand_calls_of_50_ms_overlap_and_come_out_in_input_order() -> None:
    with ModelServer(delay=CALL_SECONDS) as server:
        env = LocalEnvironment("echo-ordered")
        results = env.from_batch(range(N)).map_async(fetch_from(server.port), capacity=64).collect()
        started = time.monotonic()
        job = env.submit(autostop=True)
        took = time.monotonic() - started
    assert list(results) == [str(x) for x in range(N)]
    assert took < BOUND, f"{N} calls took {took:.1f} s"
    calls = job.metrics()["fetch_0"]["async"]
    assert calls["completed"] == N and calls["in_flight"] == 0 and calls["failed"] == 0
    assert calls["latency_p50"] >= CALL_SECONDS
    assert server.hits == Counter({str(x): 1 for x in range(N)})


def test_unordered_emits_every_record_exactly_once_with_two_instances() -> None:
    with ModelServer(delay=CALL_SECONDS) as server:
        env = LocalEnvironment("echo-unordered")
        results = (env.from_batch(range(N))
                   .map_async(fetch_from(server.port), capacity=32, ordered=False, parallelism=2).collect())
        started = time.monotonic()
        env.submit(autostop=True)
        took = time.monotonic() - started
    out = list(results)
    assert Counter(out) == Counter(str(x) for x in range(N))
    assert took < BOUND, f"{N} calls took {took:.1f} s"


def test_a_full_instance_takes_no_input_so_its_source_blocks() -> None:
    capacity, batch_size, records = 4, 4, 200
    with ModelServer() as server:
        server.stall_first = {str(x): 1 for x in range(records)}  # no call answers until released
        env = LocalEnvironment("backpressure", config={"queue_maxsize": 16, "batch_size": batch_size})
        results = env.from_batch(range(records)).map_async(fetch_from(server.port), capacity=capacity).collect()
        job = env.submit()
        assert server.wait_for(lambda s: s.in_progress == capacity)
        wait_until(lambda: job.metrics()["from_batch_0"]["backpressure_seconds"] > 0.1,
                   message="the source never blocked")
        # Taken: the batch whose calls are in flight, and the one waiting for room.
        assert job.metrics()["fetch_0"]["records_in"] <= capacity + batch_size
        assert server.in_progress == capacity
        server.release()
        assert job.wait(60) == "finished"
    assert list(results) == [str(x) for x in range(records)]


def test_keys_stay_with_their_records() -> None:
    async def double(x: int) -> int:
        return 2 * x

    class Where(MapFunction):
        def execute(self, x: int) -> tuple[int, str]:
            return x, self.name

    env = LocalEnvironment("keys")
    results = (env.from_batch(range(300)).keyby(lambda x: x % 7).map_async(double, ordered=False, parallelism=2)
               .map(Where, parallelism=3).collect())
    env.submit(autostop=True)
    out = list(results)
    assert sorted(x for x, _ in out) == [2 * x for x in range(300)]
    instances: dict[int, set[str]] = {}
    for x, name in out:
        instances.setdefault(x // 2 % 7, set()).add(name)
    assert all(len(names) == 1 for names in instances.values())  # each key reached one instance


class Client(AsyncMapFunction):
    """The class form: an async open() makes a per-instance resource on the event loop; state is kept."""

    def __init__(self, port: int, hooks: list[tuple[str, str]]) -> None:
        self.port, self.hooks, self.calls = port, hooks, 0

    async def open(self) -> None:
        self.limit = asyncio.Semaphore(4)  # belongs to the instance's event loop
        self.hooks.append(("open", threading.current_thread().name))

    async def execute(self, x: int) -> tuple[int, str]:
        async with self.limit:
            self.calls += 1
            return x, await http_get(self.port, f"/echo?x=v{x}")

    async def close(self) -> None:
        self.hooks.append(("close", threading.current_thread().name))


def test_the_class_form_runs_async_open_and_close_on_its_event_loop() -> None:
    hooks: list[tuple[str, str]] = []
    with ModelServer(delay=0.01) as server:
        env = LocalEnvironment("class-form")
        results = env.from_batch(range(50)).map_async(Client, server.port, hooks, capacity=8).collect()
        env.submit(autostop=True)
    assert list(results) == [(x, f"v{x}") for x in range(50)]
    assert [hook for hook, _ in hooks] == ["open", "close"]
    assert all(thread.startswith("sage-loop-Client_0") for _, thread in hooks)


class Lexicon(BaseService):
    def process(self, word: str) -> int:
        return len(word)


class Measure(AsyncMapFunction):
    async def execute(self, word: str) -> tuple[str, int]:
        return word, await self.call_service_async("lexicon", word)


def test_service_calls_can_be_awaited_and_still_give_a_concurrent_future() -> None:
    class Both(MapFunction):
        def execute(self, word: str) -> tuple[str, int]:
            return word, self.call_service_async("lexicon", word).result(timeout=10)

    env = LocalEnvironment("awaited-services")
    env.register_service("lexicon", Lexicon)
    words = ["a", "bb", "ccc"] * 20
    awaited = env.from_batch(words).map_async(Measure, capacity=16).collect()
    blocking = env.from_batch(words).map(Both).collect()
    env.submit(autostop=True)
    assert list(awaited) == list(blocking) == [(w, len(w)) for w in words]


def test_a_service_pipeline_answers_through_map_async() -> None:
    async def shout(text: str) -> str:
        return text.upper()

    class Ask(MapFunction):
        def execute(self, text: str) -> str:
            return self.call_service("upper", text, timeout=10)

    env = LocalEnvironment("async-service-pipeline")
    env.from_service("upper", max_in_flight=4).map_async(shout).reply()
    results = env.from_batch(["to", "be", "or"]).map(Ask).collect()
    env.submit(autostop=True)
    assert list(results) == ["TO", "BE", "OR"]


def test_async_metrics_reach_prometheus_text() -> None:
    with ModelServer() as server:
        server.fail_first = {"3": 1}
        env = LocalEnvironment("async-prometheus")
        env.from_batch(range(20)).map_async(fetch_from(server.port), retries=2, backoff=0.0).sink(lambda x: None)
        job = env.submit(autostop=True)
    families = {f.name: f for f in text_string_to_metric_families(job.metrics(format="prometheus"))}
    values = {name: [s.value for s in families[name].samples] for name in
              ("sage_async_calls_completed", "sage_async_call_retries", "sage_async_capacity",
               "sage_async_calls_in_flight")}
    assert values == {"sage_async_calls_completed": [20], "sage_async_call_retries": [1],
                      "sage_async_capacity": [64], "sage_async_calls_in_flight": [0]}
    latency = {s.labels.get("quantile"): s.value for s in families["sage_async_call_latency_seconds"].samples
               if s.name == "sage_async_call_latency_seconds"}
    assert set(latency) == {"0.5", "0.99"} and 0 < latency["0.5"] <= latency["0.99"]


def test_in_a_feedback_loop_the_loop_ends_only_after_the_calls_in_flight() -> None:
    async def halve(x: int) -> int:
        await asyncio.sleep(0.005)
        return x // 2

    env = LocalEnvironment("async-loop")
    future = env.from_future("again")
    halved = env.from_batch(range(1, 50)).connect(future).map(lambda x: x).map_async(halve, capacity=8)
    halved.filter(lambda x: x > 0).fill_future(future)
    zeros = halved.filter(lambda x: x == 0).collect()
    job = env.submit(autostop=True)
    assert list(zeros) == [0] * 49  # every number went round until it reached 0
    assert job.metrics()["halve_0"]["async"]["completed"] == sum(x.bit_length() for x in range(1, 50))
