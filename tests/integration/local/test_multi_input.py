"""Operators over connected streams: comap and keyed join on bounded sources."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import CoMapFunction, JoinFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT


class Label(CoMapFunction):
    def map0(self, data: int) -> tuple[str, int]:
        return "short", data

    def map1(self, data: int) -> tuple[str, int]:
        return "long", data


@pytest.mark.parametrize("parallelism", [1, 2])
def test_comap_of_two_sources_of_very_different_lengths(parallelism: int) -> None:
    out: list[tuple[str, int]] = []
    env = LocalEnvironment("comap")
    short = env.from_batch([1, 2, 3])
    long = env.from_batch(range(20_000), parallelism=2)
    short.connect(long).comap(Label, parallelism=parallelism).sink(TestingSink, out)
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert sorted(v for tag, v in out if tag == "short") == [1, 2, 3]
    assert sorted(v for tag, v in out if tag == "long") == list(range(20_000))
    assert len(out) == 20_003


class MatchOrders(JoinFunction):
    """Inner join of users (input 0) and orders (input 1) on the user id.

    Buffers each side per key; every new record joins with what the other
    side has buffered, so every (user, order) pair is emitted exactly once
    whatever the arrival order.
    """

    def __init__(self) -> None:
        self.users: dict[Any, list[str]] = {}
        self.orders: dict[Any, list[str]] = {}

    def execute(self, payload: dict[str, Any], key: Any, tag: int) -> list[tuple[Any, str, str]]:
        if tag == 0:
            self.users.setdefault(key, []).append(payload["name"])
            return [(key, payload["name"], item) for item in self.orders.get(key, [])]
        self.orders.setdefault(key, []).append(payload["item"])
        return [(key, name, payload["item"]) for name in self.users.get(key, [])]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_keyed_join_emits_every_match(parallelism: int) -> None:
    users = [{"id": i, "name": f"user{i}"} for i in range(50)]
    orders = [{"user": i % 60, "item": f"item{i}"} for i in range(600)]  # users 50..59 do not exist
    out: list[tuple[Any, str, str]] = []
    env = LocalEnvironment("join")
    left = env.from_batch(users).keyby(lambda u: u["id"])
    right = env.from_batch(orders, parallelism=2).keyby(lambda o: o["user"])
    left.connect(right).join(MatchOrders, parallelism=parallelism).sink(TestingSink, out)
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    expected = Counter((o["user"], f"user{o['user']}", o["item"]) for o in orders if o["user"] < 50)
    assert Counter(out) == expected


def test_union_map_over_connected_streams() -> None:
    out: list[int] = []
    env = LocalEnvironment("union")
    env.from_batch(range(100)).connect(env.from_batch(range(100, 150))).map(lambda x: -x).sink(TestingSink, out)
    env.submit(autostop=True)
    assert sorted(out) == sorted(-x for x in range(150))
