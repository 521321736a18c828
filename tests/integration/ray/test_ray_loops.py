"""Feedback loops on Ray: Collatz to 10,000 through a loop whose tasks are actors, on both transports."""

from __future__ import annotations

import pytest
from ray_job_support import finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import MapFunction

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


class CollatzStep(MapFunction):
    def execute(self, record: tuple[int, int, int]) -> tuple[int, int, int]:
        n, steps, start = record
        if n == 1:
            return record
        return (n // 2 if n % 2 == 0 else 3 * n + 1), steps + 1, start


@pytest.mark.parametrize("transport", ["ray", "rpc"])
def test_collatz_through_a_loop_of_actors(transport: str) -> None:
    count = 10_000
    env = RayEnvironment("ray-collatz", config={"transport": transport})
    loop = env.from_future("again")
    step = env.from_batch([(n, 0, n) for n in range(1, count + 1)]).connect(loop).map(CollatzStep, parallelism=2)
    step.filter(lambda r: r[0] != 1).fill_future(loop)
    results = step.filter(lambda r: r[0] == 1).collect()
    job = env.submit()
    assert finish(job, 300) == "finished"
    records = list(results)
    assert sorted(start for _, _, start in records) == list(range(1, count + 1))
    assert all(steps == collatz_steps(start) for _, steps, start in records)
    assert job.metrics()["filter_0"]["fed_back"] == sum(collatz_steps(n) for n in range(2, count + 1)) - (count - 1)


class FailOnceAt(MapFunction):
    """A Collatz step that fails once, at its `at`-th record, in whichever attempt first gets there
    (a marker file says it happened: actors share no memory with the test)."""

    def __init__(self, at: int, marker: str) -> None:
        self.at, self.marker, self.seen = at, marker, 0

    def execute(self, record: tuple[int, int, int]) -> tuple[int, int, int]:
        import os

        self.seen += 1
        if self.seen == self.at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("injected once")
        return CollatzStep().execute(record)

    def get_state(self) -> int:
        return self.seen

    def restore_state(self, state: int) -> None:
        self.seen = state


def test_a_loop_of_actors_restarts_from_a_checkpoint_exactly_once(tmp_path) -> None:
    count = 3_000
    env = RayEnvironment("ray-collatz-restart", config={
        "transport": "rpc", "checkpoint_interval": 0.1, "checkpoint_dir": str(tmp_path / "ck"),
        "restart_attempts": 1, "restart_delay": 0.05, "queue_maxsize": 256})
    loop = env.from_future("again")
    step = (env.from_batch([(n, 0, n) for n in range(1, count + 1)]).connect(loop)
               .map(FailOnceAt, 40_000, str(tmp_path / "failed"), parallelism=2))
    step.filter(lambda r: r[0] != 1).fill_future(loop)
    results = step.filter(lambda r: r[0] == 1).collect()
    job = env.submit()
    assert finish(job, 300) == "finished"
    assert (tmp_path / "failed").exists() and job.metrics()["job"]["restarts"] == 1
    records = list(results)
    assert sorted(start for _, _, start in records) == list(range(1, count + 1))
    assert all(steps == collatz_steps(start) for _, steps, start in records)
