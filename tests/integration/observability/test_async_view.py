"""The live view and the summary show async calls per operator and batch sizes per service."""

from __future__ import annotations

import asyncio
import io
import time

from rich.console import Console

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import AsyncMapFunction
from sage.kernel.api.service import BaseService, batch
from sage.kernel.observability.job_view import async_rows, service_rows
from sage.kernel.observability.live_view import Monitor, job_panel
from sage.kernel.runtime.job_manager import job_manager


class Doubler(BaseService):
    @batch(max_batch_size=4, max_wait=0.01)
    def process(self, items: list[int]) -> list[int]:
        return [2 * x for x in items]


class Double(AsyncMapFunction):
    async def execute(self, x: int) -> int:
        if x == 5 and not hasattr(self, "failed_once"):
            self.failed_once = True
            raise ConnectionError("refused")
        await asyncio.sleep(0.001)
        return await self.call_service_async("doubler", x)


def test_async_calls_and_batches_appear_in_the_live_view_and_the_summary() -> None:
    out = io.StringIO()
    monitor = Monitor("plain", stream=out)
    job_manager().add_listener(monitor)
    try:
        env = LocalEnvironment("async-view")
        env.register_service("doubler", Doubler)
        env.from_batch(range(40)).map_async(Double, capacity=8, retries=1, backoff=0.0,
                                            parallelism=2).sink(lambda x: None)
        env.submit(autostop=True)
    finally:
        job_manager().remove_listener(monitor)
    [watched] = monitor.watched()
    metrics = watched.metrics()
    [row] = async_rows(watched.graph, metrics)
    assert (row.name, row.capacity, row.in_flight, row.completed, row.retried) == ("Double", 16, 0, 40, 1)
    assert len(async_rows(watched.graph, metrics, expand=True)) == 2
    [service] = service_rows(metrics, watched.graph)
    assert service.batch_mean is not None and 1 <= service.batch_mean <= 4

    console = Console(file=io.StringIO(), width=200)
    console.print(job_panel(watched, metrics, False, time.monotonic()))
    live = console.file.getvalue()
    assert "async calls" in live and "0/16" in live and "batch wait p99" in live
    monitor.print_summaries()
    summary = out.getvalue()
    assert "async calls" in summary and "Double" in summary and "batch" in summary
