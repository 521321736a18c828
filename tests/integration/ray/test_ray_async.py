"""Async calls on RayEnvironment: map_async in task actors awaiting a batching service actor."""

from __future__ import annotations

import asyncio

import pytest
from ray_job_support import finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import AsyncMapFunction
from sage.kernel.api.service import BaseService, batch

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
