"""Collatz through a feedback loop: every number comes out once, with its exact step count.

The loop is the issue's own pipeline: a map takes a number one step, a filter
sends the numbers not yet at 1 round again, another lets the finished ones
out. With `queue_maxsize=1` every queue holds one record, so the loop only
finishes if its feedback edge never waits.
"""

from __future__ import annotations

from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


class CollatzStep(MapFunction):
    """(n, steps, start) -> the next number, one more step; a number at 1 stays as it is."""

    def execute(self, record: tuple[int, int, int]) -> tuple[int, int, int]:
        n, steps, start = record
        if n == 1:
            return record
        return (n // 2 if n % 2 == 0 else 3 * n + 1), steps + 1, start


def run_collatz(env: Any, count: int, parallelism: int) -> dict[int, int]:
    """Build the loop in `env`, run it, and return each start number's step count (checked once each)."""
    loop = env.from_future("again")
    step = (env.from_batch([(n, 0, n) for n in range(1, count + 1)])
            .connect(loop)
            .map(CollatzStep, parallelism=parallelism))
    step.filter(lambda r: r[0] != 1).fill_future(loop)
    results = step.filter(lambda r: r[0] == 1).collect()
    job = env.submit(autostop=True)
    records = list(results)
    starts = [start for _, _, start in records]
    assert len(starts) == len(set(starts)) == count, "every number comes out exactly once"
    fed_back = sum(m.get("fed_back", 0) for m in job.metrics().values() if isinstance(m, dict))
    assert fed_back == sum(collatz_steps(n) for n in range(1, count + 1)) - count + (1 if count else 0)
    return {start: steps for _, steps, start in records}


def check(steps: dict[int, int], count: int) -> None:
    assert steps == {n: collatz_steps(n) for n in range(1, count + 1)}


@pytest.mark.parametrize("transport", ["python", "rpc"])
@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_collatz_to_ten_thousand_with_default_queues(transport: str, parallelism: int) -> None:
    env = LocalEnvironment("collatz", config={"transport": transport})
    check(run_collatz(env, 10_000, parallelism), 10_000)


@pytest.mark.parametrize("transport", ["python", "rpc"])
@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_collatz_with_one_record_queues_never_deadlocks(transport: str, parallelism: int) -> None:
    env = LocalEnvironment("collatz-tiny", config={"transport": transport, "queue_maxsize": 1})
    check(run_collatz(env, 1_000, parallelism), 1_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_collatz_to_ten_thousand_with_one_record_queues() -> None:
    # ~2.5 million hand-overs of one record each between threads: about a minute on a quiet 2-core machine.
    env = LocalEnvironment("collatz-tiny-full", config={"queue_maxsize": 1})
    check(run_collatz(env, 10_000, 2), 10_000)
