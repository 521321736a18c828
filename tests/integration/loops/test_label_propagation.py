"""Connected components by label propagation through a keyed feedback loop: exact components.

Every vertex starts with its own id as label. A keyed flatmap holds each
vertex's smallest label so far; a smaller label makes it tell its neighbours,
whose messages go round the loop (keyed by the neighbour, so they reach the
instance that holds it). The job ends when no label changes any more: each
vertex then holds the smallest id of its component.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import FlatMapFunction


def random_graph(vertices: int, components: int, seed: int) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Adjacency lists of a random graph with `components` connected parts, and each vertex's smallest
    component member (computed apart, by a plain graph search)."""
    rng = random.Random(seed)
    ids = list(range(vertices))
    rng.shuffle(ids)
    parts = [ids[i::components] for i in range(components)]
    adjacency: dict[int, list[int]] = {v: [] for v in ids}
    for part in parts:
        for position in range(1, len(part)):  # a random spanning tree keeps the part connected
            a, b = part[position], part[rng.randrange(position)]
            adjacency[a].append(b)
            adjacency[b].append(a)
        for _ in range(len(part)):  # and extra edges make cycles
            a, b = rng.choice(part), rng.choice(part)
            if a != b:
                adjacency[a].append(b)
                adjacency[b].append(a)
    smallest = {}
    for part in parts:
        low = min(part)
        smallest.update(dict.fromkeys(part, low))
    return adjacency, smallest


class Propagate(FlatMapFunction):
    """(vertex, label): keep the smaller label; on a change, report it and tell the neighbours."""

    def __init__(self, adjacency: dict[int, list[int]]) -> None:
        self.adjacency = adjacency
        self.labels: dict[int, int] = {}

    def execute(self, message: tuple[int, int]) -> list[tuple[str, int, int]]:
        vertex, label = message
        if label >= self.labels.get(vertex, label + 1):
            return []
        self.labels[vertex] = label
        return [("label", vertex, label)] + [("tell", neighbour, label) for neighbour in self.adjacency[vertex]]


def components(transport: str, parallelism: int, maxsize: int | None, adjacency: dict[int, list[int]]) -> Any:
    config: dict[str, Any] = {"transport": transport}
    if maxsize is not None:
        config["queue_maxsize"] = maxsize
    env = LocalEnvironment("components", config=config)
    loop = env.from_future("messages")
    starts = env.from_batch([(v, v) for v in adjacency]).keyby(lambda m: m[0])
    updates = starts.connect(loop).flatmap(Propagate, adjacency, parallelism=parallelism)
    (updates.filter(lambda u: u[0] == "tell")
            .map(lambda u: (u[1], u[2]))
            .keyby(lambda m: m[0], parallelism=parallelism)
            .fill_future(loop))
    labels = updates.filter(lambda u: u[0] == "label").collect()
    env.submit(autostop=True)
    final: dict[int, int] = {}
    for _, vertex, label in labels:
        final[vertex] = min(label, final.get(vertex, label))
    return final


@pytest.mark.parametrize(("transport", "parallelism", "maxsize"),
                         [("python", 3, None), ("rpc", 2, None), ("python", 2, 4)])
def test_label_propagation_finds_the_exact_components(transport: str, parallelism: int, maxsize: int | None) -> None:
    adjacency, smallest = random_graph(2_000, 25, seed=parallelism)
    assert components(transport, parallelism, maxsize, adjacency) == smallest
