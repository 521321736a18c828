"""Fan-out gives every consumer its own records (rule 8); equal keys route together (rule 9).

Each fan-out test runs many jobs: the corruption it guards against was a race
(a consumer rewriting a record before the copies for the others were made).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT

N = 20_000
JOBS = 21


class Rewrite(MapFunction):
    """Checks its input is what the source sent, then rewrites it: in place for a dict, into a
    new tuple otherwise. A record another consumer already rewrote fails the job."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def execute(self, data: Any) -> Any:
        if isinstance(data, dict):
            if set(data) != {"n"}:
                raise AssertionError(f"{self.name} received {data!r}, already rewritten by another consumer")
            data["seen_by"] = self.name
            return self.tag, self.name, data["n"]
        if not isinstance(data, int):
            raise AssertionError(f"{self.name} received {data!r}, already rewritten by another consumer")
        return self.tag, self.name, data


def records(kind: str) -> list[Any]:
    return [{"n": i} for i in range(N)] if kind == "dict" else list(range(N))


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_broadcast_gives_every_instance_every_record_untouched(transport: str) -> None:
    for job_number in range(JOBS):
        parallelism = 2 + job_number % 3
        kind = "dict" if job_number % 2 else "int"
        out: list[tuple[str, str, int]] = []
        env = LocalEnvironment(f"broadcast-{job_number}", config={"transport": transport})
        (env.from_batch(records(kind))
            .keyby(lambda r: 0, strategy="broadcast")
            .map(Rewrite, "b", parallelism=parallelism)
            .sink(TestingSink, out))
        env.submit().wait(JOB_TIMEOUT)
        per_instance: dict[str, Counter[int]] = defaultdict(Counter)
        for _, name, n in out:
            per_instance[name][n] += 1
        assert sorted(per_instance) == [f"Rewrite_{i}" for i in range(parallelism)], f"job {job_number}"
        for name, seen in per_instance.items():
            assert seen == Counter(range(N)), f"job {job_number}: {name} did not get each record exactly once"


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_one_stream_read_by_three_operators_gives_each_its_own_records(transport: str) -> None:
    for job_number in range(JOBS):
        kind = "dict" if job_number % 2 else "int"
        outs: dict[str, list[tuple[str, str, int]]] = {"A": [], "B": [], "C": []}
        env = LocalEnvironment(f"three-way-{job_number}", config={"transport": transport})
        stream = env.from_batch(records(kind))
        for tag, out in outs.items():
            stream.map(Rewrite, tag).sink(TestingSink, out)
        env.submit().wait(JOB_TIMEOUT)
        for tag, out in outs.items():
            assert {t for t, _, _ in out} == {tag}
            assert Counter(n for _, _, n in out) == Counter(range(N)), f"job {job_number}: consumer {tag}"


def test_a_consumer_changing_its_records_leaves_the_sources_list_alone_on_fan_out() -> None:
    """Only extra deliveries are copies: the first consumer works on the source's own objects."""
    source = [{"n": i} for i in range(100)]
    first: list[Any] = []
    second: list[Any] = []
    env = LocalEnvironment("copies")
    stream = env.from_batch(source)
    stream.map(Rewrite, "first").sink(TestingSink, first)
    stream.map(Rewrite, "second").sink(TestingSink, second)
    env.submit(autostop=True)
    assert len(first) == len(second) == 100
    assert sum("seen_by" in record for record in source) == 100  # one consumer had the originals


class RunningCount(MapFunction):
    """Counts the records of each key this instance sees."""

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()

    def execute(self, record: tuple[Any, int]) -> tuple[str, Any, int]:
        key = record[0]
        self.counts[key] += 1
        return self.name, key, self.counts[key]


@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_keys_equal_in_python_are_counted_by_one_instance(transport: str) -> None:
    spellings = {"zero": [0.0, -0.0, 0, False], "one": [1, 1.0, True], "pair": [(1, 0.0), (True, -0.0), (1.0, 0)]}
    source = [(spelling, i) for i in range(1000) for variants in spellings.values()
              for spelling in [variants[i % len(variants)]]]
    out: list[tuple[str, Any, int]] = []
    env = LocalEnvironment("equal-keys", config={"transport": transport})
    env.from_batch(source).keyby(lambda r: r[0]).map(RunningCount, parallelism=5).sink(TestingSink, out)
    env.submit(autostop=True)
    by_group: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, key, count in out:
        group = next(g for g, variants in spellings.items() if key in variants)  # `in` compares with ==
        by_group[group].append((name, count))
    assert sorted(by_group) == sorted(spellings)
    for group, seen in by_group.items():
        owners = {name for name, _ in seen}
        assert len(owners) == 1, f"{group}: split over {owners}"
        assert max(count for _, count in seen) == 1000, f"{group}: the count of 1000 was split"
