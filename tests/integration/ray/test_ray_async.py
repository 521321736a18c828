"""Async calls on RayEnvironment: map_async in task actors awaiting a batching service actor (on the ray transport
too, where each queue operation is a remote call)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray_job_support import JOB_TIMEOUT, Latch, finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import AsyncMapFunction
from sage.kernel.api.service import BaseService, batch
from sage.kernel.testing import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CALLS = 200


class Embedder(BaseService):
    """A batch at a time, slowly (a model on a GPU); an item divisible by 17 is its caller's error."""

    @batch(max_batch_size=8, max_wait=0.02)
    def process(self, items: list[int]) -> list[object]:
        import time

        time.sleep(0.01)
        return [ValueError(f"cannot embed {x}") if x % 17 == 0 else x * 10 for x in items]


class Embed(AsyncMapFunction):
    async def execute(self, x: int) -> tuple[int, object]:
        await asyncio.sleep(0.001)
        try:
            return x, await self.call_service_async("embedder", x, timeout=30)
        except ValueError as exc:
            return x, str(exc)


def test_map_async_awaits_a_batching_service_across_actors() -> None:
    env = RayEnvironment("ray-async-batching")
    env.register_service("embedder", Embedder, max_concurrency=2)
    results = env.from_batch(range(CALLS)).map_async(Embed, capacity=8, parallelism=2).collect()
    job = env.submit()
    assert finish(job) == "finished"
    assert sorted(results) == [(x, f"cannot embed {x}" if x % 17 == 0 else x * 10) for x in range(CALLS)]
    metrics = job.metrics()
    batches = metrics["service:embedder"]["batches"]["process"]
    assert batches["requests"] == CALLS and max(batches["sizes"]) > 1  # 16 callers at once: grouped
    assert sum(metrics[f"Embed_{i}"]["async"]["completed"] for i in range(2)) == CALLS


QUEUED = 96
FULL = 32


class GatedEmbedder(BaseService):
    """Starts serving only once the test opens `gate` (a `Latch`): by then every request waits in its queue."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate

    def setup(self) -> None:
        import ray

        ray.get(self.gate.wait.remote(), timeout=JOB_TIMEOUT)

    @batch(max_batch_size=FULL, max_wait=0.01)
    def process(self, items: list[int]) -> list[int]:
        return [x * 10 for x in items]


class Awaits(AsyncMapFunction):
    async def execute(self, x: int) -> int:
        result: int = await self.call_service_async("embedder", x, timeout=JOB_TIMEOUT)
        return result


def test_on_the_ray_transport_queued_requests_reach_a_batching_service_in_full_batches() -> None:
    gate = Latch.remote()
    env = RayEnvironment("ray-async-full-batches", config={"transport": "ray"})
    env.register_service("embedder", GatedEmbedder, gate)
    results = env.from_batch(range(QUEUED)).map_async(Awaits, capacity=QUEUED).collect()
    job = env.submit()
    try:
        # No event says when the last request is queued: its count is in the service's metrics.
        wait_until(lambda: job.metrics()["service:embedder"]["request_queue_size"] == QUEUED, JOB_TIMEOUT,
                   "the requests did not all reach the service's queue")
    finally:
        gate.set.remote()
    assert finish(job) == "finished"
    assert sorted(results) == [x * 10 for x in range(QUEUED)]
    # The service takes a batch's worth of requests per get (one remote call), not one per request, which let
    # max_wait pass with the batch far from full.
    sizes = job.metrics()["service:embedder"]["batches"]["process"]["sizes"]
    assert sizes == {FULL: QUEUED // FULL}
