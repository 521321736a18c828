"""Bounded queues bound memory under a slow sink; keyed routing gives each key one owner."""

from __future__ import annotations

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction, SinkFunction
from sage.kernel.runtime.job_manager import job_manager
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT

N = 2000


class SlowSampling(SinkFunction):
    """A slow sink (a little computation per record) noting queue sizes at every record.

    `sizes` gets `(own input qsize, qsize of the input of task `upstream`)`.
    """

    def __init__(self, out: list[int], sizes: list[tuple[int, int]], upstream: str) -> None:
        self.out, self.sizes, self.upstream = out, sizes, upstream

    def open(self) -> None:
        self.upstream_qd = job_manager().graph(self.ctx.job_id).nodes[self.upstream].input_qd

    def execute(self, data: int) -> None:
        sum(range(3000))  # slow enough that the upstream fills the queues
        self.sizes.append((self.ctx.input_qd.qsize(), self.upstream_qd.qsize()))
        self.out.append(data)


def test_queues_of_size_two_with_a_slow_sink() -> None:
    out: list[int] = []
    sizes: list[tuple[int, int]] = []
    env = LocalEnvironment("slow-sink", config={"queue_maxsize": 2})
    env.from_batch(range(N)).map(lambda x: x * 3).sink(SlowSampling, out, sizes, "map_0")
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"

    assert out == [x * 3 for x in range(N)]
    own, upstream = max(s[0] for s in sizes), max(s[1] for s in sizes)
    assert own <= 2 and upstream <= 2
    # The queues really were under pressure: full at times, and the producers waited for room.
    assert upstream == 2
    metrics = job.metrics()
    assert metrics["from_batch_0"]["backpressure_seconds"] > 0
    assert metrics["map_0"]["backpressure_seconds"] > 0


class RecordOwner(MapFunction):
    """Keeps per-key state (a count per key) and reports which instance saw which key."""

    def __init__(self, seen: list[tuple[str, str]]) -> None:
        self.seen = seen
        self.counts: dict[str, int] = {}

    def execute(self, word: str) -> tuple[str, int]:
        self.counts[word] = self.counts.get(word, 0) + 1
        self.seen.append((word, self.name))
        return word, self.counts[word]


def test_each_key_is_seen_by_exactly_one_instance() -> None:
    words = [f"w{i % 40}" for i in range(4000)] + ["", "0"]
    seen: list[tuple[str, str]] = []
    out: list[tuple[str, int]] = []
    env = LocalEnvironment("keyed-state")
    (env.from_batch(words, parallelism=2)
        .keyby(lambda w: w)
        .map(RecordOwner, seen, parallelism=3)
        .sink(TestingSink, out))
    env.submit(autostop=True)

    owners: dict[str, set[str]] = {}
    for word, name in seen:
        owners.setdefault(word, set()).add(name)
    assert set(owners) == set(words)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert {name for names in owners.values() for name in names} == {"RecordOwner_0", "RecordOwner_1", "RecordOwner_2"}
    # Per-key state is complete because one instance saw every record of its key.
    final = {}
    for word, count in out:
        final[word] = max(final.get(word, 0), count)
    assert final == {w: words.count(w) for w in set(words)}


def test_broadcast_and_round_robin_strategies() -> None:
    seen: list[tuple[int, str]] = []

    class Who(MapFunction):
        def execute(self, data: int) -> tuple[int, str]:
            seen.append((data, self.name))
            return data

    env = LocalEnvironment("strategies")
    env.from_batch(range(30)).keyby(lambda x: x, strategy="broadcast").map(Who, parallelism=3).sink(TestingSink, [])
    env.submit(autostop=True)
    assert sorted(seen) == sorted((x, f"Who_{i}") for x in range(30) for i in range(3))

    seen.clear()
    env = LocalEnvironment("strategies-rr")
    env.from_batch(range(30)).keyby(lambda x: 0, strategy="round_robin").map(Who, parallelism=3).sink(TestingSink, [])
    env.submit(autostop=True)
    per_instance = {name: sum(1 for _, n in seen if n == name) for name in ("Who_0", "Who_1", "Who_2")}
    assert per_instance == {"Who_0": 10, "Who_1": 10, "Who_2": 10}
