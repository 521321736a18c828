"""job.stop() drains calls in flight; job.cancel() cancels them and ends the event loop."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import SourceFunction
from sage.kernel.testing import wait_until

from .support import ModelServer, http_get


class Count(SourceFunction):
    """0, 1, 2, ... without end."""

    def __init__(self) -> None:
        self.numbers = itertools.count()

    def execute(self) -> int:
        return next(self.numbers)


def test_stop_drains_the_calls_in_flight_and_emits_every_record_taken() -> None:
    capacity = 16
    with ModelServer(delay=0.01) as server:
        server.stall_first = {str(x): 1 for x in range(100, 100 + capacity)}  # in flight when the job stops
        port = server.port

        async def fetch(x: int) -> str:
            return await http_get(port, f"/echo?x={x}")

        env = LocalEnvironment("async-stop", config={"queue_maxsize": 64})
        results = env.from_source(Count).map_async(fetch, capacity=capacity).collect()
        job = env.submit()
        out = []
        for record in results:
            out.append(record)
            if len(out) == 100:
                assert server.wait_for(lambda s: s.in_progress == capacity)
                job.stop()
                server.release()
        assert job.wait(60) == "finished"
    metrics = job.metrics()
    emitted = metrics["Count_0"]["records_out"]
    assert emitted >= 100 + capacity
    assert out == [str(x) for x in range(emitted)]
    assert metrics["fetch_0"]["async"]["completed"] == emitted and metrics["fetch_0"]["async"]["in_flight"] == 0


def test_cancel_cancels_the_calls_in_flight_and_ends_the_event_loop() -> None:
    capacity = 8
    cancelled: list[int] = []
    all_cancelled = threading.Event()
    with ModelServer() as server:
        server.stall_first = {str(x): 1 for x in range(100)}
        port = server.port

        async def fetch(x: int) -> Any:
            try:
                return await http_get(port, f"/echo?x={x}")
            except asyncio.CancelledError:
                cancelled.append(x)
                if len(cancelled) == capacity:
                    all_cancelled.set()
                raise

        env = LocalEnvironment("async-cancel")
        env.from_batch(range(100)).map_async(fetch, capacity=capacity).sink(lambda x: None)
        job = env.submit()
        assert server.wait_for(lambda s: s.in_progress == capacity)
        job.cancel()
        assert job.wait(30) == "cancelled"
        assert all_cancelled.wait(30), cancelled
    assert sorted(cancelled) == list(range(capacity))
    wait_until(lambda: not any(t.name.startswith("sage-loop-fetch") for t in threading.enumerate()),
               message="the event loop thread is still running")
