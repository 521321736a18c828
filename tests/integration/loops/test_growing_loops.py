"""A loop whose records multiply, then shrink back, with tiny queues: it finishes, exactly, in bounded memory.

Each seed grows into a binary tree of records (two children per round for
DEPTH rounds: 2**DEPTH leaves), then the leaves merge pairwise back to the
root, one level per round, through a keyed merge inside the loop. The root
leaves the loop. The test counts the records alive in the loop at every
moment: with tiny queues no new seed enters while the loop is full, so the
peak stays a small multiple of one seed's tree, far below what the job
creates in all.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import FlatMapFunction, MapFunction

DEPTH = 6
SEEDS = 120


class Population:
    """Records alive in the loop (made by Grow or Merge, not yet consumed by them), and the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alive = self.peak = self.created = 0

    def change(self, consumed: int, created: int) -> None:
        with self._lock:
            self.alive += created - consumed
            self.created += created
            self.peak = max(self.peak, self.alive)


class Grow(FlatMapFunction):
    """(seed, depth, path, phase): grow two children per round; at DEPTH, turn to shrinking."""

    def __init__(self, population: Population) -> None:
        self.population = population

    def execute(self, record: tuple[int, int, int, str]) -> list[tuple[int, int, int, str]]:
        seed, depth, path, phase = record
        if phase == "grow" and depth < DEPTH:
            out = [(seed, depth + 1, path * 2, "grow"), (seed, depth + 1, path * 2 + 1, "grow")]
        elif phase == "grow":
            out = [(seed, depth, path, "shrink")]
        else:
            out = [record]
        self.population.change(1, len(out))
        return out


class Merge(MapFunction):
    """Keyed by (seed, depth, parent path): the second sibling to arrive makes the parent."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.waiting: dict[tuple[int, int, int], tuple[int, int, int, str]] = {}

    def execute(self, record: tuple[int, int, int, str]) -> tuple[int, int, int, str] | None:
        seed, depth, path, _ = record
        key = (seed, depth, path // 2)
        if self.waiting.pop(key, None) is None:
            self.waiting[key] = record
            return None
        self.population.change(2, 1)
        return seed, depth - 1, path // 2, "shrink"


def grow_and_shrink(transport: str, maxsize: int, population: Population) -> list[Any]:
    env = LocalEnvironment("grow-shrink", config={"transport": transport, "queue_maxsize": maxsize})
    loop = env.from_future("again")
    seeds = env.from_batch(range(SEEDS)).map(lambda s: (s, 0, 0, "grow"))
    step = seeds.connect(loop).flatmap(Grow, population, parallelism=2)
    parents = (step.filter(lambda r: r[3] == "shrink")
                   .keyby(lambda r: (r[0], r[1], r[2] // 2))
                   .map(Merge, population, parallelism=3)
                   .filter(lambda r: r is not None))
    step.filter(lambda r: r[3] == "grow").connect(parents.filter(lambda r: r[1] > 0)).map(lambda r: r).fill_future(loop)
    roots = parents.filter(lambda r: r[1] == 0).collect()
    env.submit(autostop=True)
    return list(roots)


@pytest.mark.parametrize(("transport", "maxsize"), [("python", 1), ("rpc", 1), ("python", 2)])
def test_a_multiplying_loop_with_tiny_queues_finishes_exactly_in_bounded_memory(transport: str, maxsize: int) -> None:
    population = Population()
    roots = grow_and_shrink(transport, maxsize, population)
    assert sorted(roots) == [(seed, 0, 0, "shrink") for seed in range(SEEDS)]
    leaves = 2 ** DEPTH
    # Per seed: 2 * leaves - 2 records while growing, one per leaf turning, leaves - 1 parents merged,
    # and leaves - 2 parents going round once more before their next merge.
    assert population.created == SEEDS * 5 * (leaves - 1)
    assert population.alive == 0
    # The job makes 37,800 records; the loop never holds more than a few trees at once.
    assert population.peak <= 20 * leaves, population.peak
