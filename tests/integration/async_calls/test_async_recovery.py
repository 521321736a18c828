"""map_async under checkpoints: a barrier waits for the calls in flight, so after an injected failure and a
restart from the last checkpoint every result is emitted exactly once and the function's state is exact."""

from __future__ import annotations

import asyncio
import pathlib
import threading

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import AsyncMapFunction

N = 3000
ARMED_FROM = 500


class Enrich(AsyncMapFunction):
    """Counts the calls it completed (its checkpointed state). Once it has seen ARMED_FROM, it fails the first
    call after a checkpoint it took part in completes: the restart then starts from a checkpoint whose
    barrier came while calls were in flight, before any later checkpoint could complete."""

    def __init__(self, failed: threading.Event) -> None:
        self.failed, self.done = failed, 0
        self.armed, self.snapshot, self.fail_next = False, 0, False

    async def execute(self, x: int) -> tuple[int, int]:
        self.armed = self.armed or x >= ARMED_FROM
        if self.fail_next and not self.failed.is_set():
            self.failed.set()
            raise RuntimeError("injected once")
        await asyncio.sleep(0.01)  # a call's latency: many are in flight when a barrier arrives
        self.done += 1
        return x * 2, self.done

    def get_state(self) -> int:
        if self.armed:
            self.snapshot = self.ctx.checkpoint_id
        return self.done

    def restore_state(self, state: int) -> None:
        self.done = state

    def on_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.fail_next = self.fail_next or (self.snapshot > 0 and checkpoint_id >= self.snapshot)


def test_a_restart_emits_every_result_once_and_restores_exact_state(tmp_path: pathlib.Path) -> None:
    failed = threading.Event()
    env = LocalEnvironment("async-restart", config={
        "checkpoint_interval": 0.1, "checkpoint_dir": str(tmp_path), "restart_attempts": 1, "restart_delay": 0.01,
        "queue_maxsize": 256, "batch_size": 32})
    results = env.from_batch(range(N)).map_async(Enrich, failed, capacity=32).collect()
    job = env.submit(autostop=True)
    out = list(results)
    metrics = job.metrics()["job"]
    assert failed.is_set() and metrics["restarts"] == 1 and metrics["restored_from"]
    assert [value for value, _ in out] == [2 * x for x in range(N)]
    # The count each result carries came from the restored state: every count from 1 to N exactly once.
    assert sorted(count for _, count in out) == list(range(1, N + 1))
