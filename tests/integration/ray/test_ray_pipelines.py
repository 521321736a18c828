"""Pipelines on RayEnvironment: exact results, keyed state across actors, jobs side by side, cleanup."""

from __future__ import annotations

import collections
import os

import pytest
import ray
from ray_job_support import assert_cleaned_up, finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import MapFunction

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 1200
KEYS = 17


class KeyedCount(MapFunction):
    """Keyed state: counts the records of each key in this instance; tags each record with where it ran."""

    def __init__(self) -> None:
        self.seen: collections.Counter[int] = collections.Counter()

    def execute(self, value: int) -> tuple[int, int, str, int]:
        key = value % KEYS
        self.seen[key] += 1
        return value, self.seen[key], self.name, os.getpid()


# Reduced from the local backend's 3x3 matrix: every actor is a process that takes about a
# second to start here. Fan-out on Ray queues, fan-in on rpc queues, and the plain chain.
@pytest.mark.parametrize(("transport", "upstream", "downstream"), [("ray", 1, 1), ("ray", 2, 3), ("rpc", 3, 2)])
def test_every_record_arrives_once_and_each_key_lives_on_one_actor(transport, upstream, downstream):
    env = RayEnvironment(f"exact-{transport}-{upstream}x{downstream}", config={"transport": transport})
    results = (env.from_batch(list(range(N)), parallelism=upstream)
        .map(lambda x: x * 2, parallelism=upstream)
        .keyby(lambda x: x % KEYS)
        .map(KeyedCount, parallelism=downstream)
        .collect())
    job = env.submit()
    assert finish(job) == "finished"
    out = list(results)

    assert collections.Counter(value for value, *_ in out) == collections.Counter(x * 2 for x in range(N))
    places: dict[int, set[tuple[str, int]]] = collections.defaultdict(set)
    counts: dict[int, list[int]] = collections.defaultdict(list)
    for value, count, name, pid in out:
        places[value % KEYS].add((name, pid))
        counts[value % KEYS].append(count)
    # One instance per key, and that instance's state counted every record of the key.
    assert all(len(where) == 1 for where in places.values()), places
    assert all(sorted(seen) == list(range(1, len(seen) + 1)) for seen in counts.values())
    instances = set().union(*places.values())
    names = {name for name, _ in instances}
    assert names <= {f"KeyedCount_{i}" for i in range(downstream)}
    # Each instance is an actor process of its own, none of them the driver.
    assert len({pid for _, pid in instances}) == len(names) and os.getpid() not in {pid for _, pid in instances}

    metrics = job.metrics()
    assert sum(m["records_out"] for m in metrics.values() if m["kind"] == "batch") == N
    assert sum(m["records_in"] for m in metrics.values() if m["kind"] == "collect") == N
    assert {m["status"] for m in metrics.values()} == {"finished"}


class WithJob(MapFunction):
    """Tags each record with the id of the job whose task handled it."""

    def execute(self, record: tuple[str, int]) -> tuple[str, str, int]:
        return (self.ctx.job_id, *record)


def test_two_jobs_at_once_keep_to_their_own_queues_and_leave_nothing_behind():
    jobs, results = {}, {}
    for label in ("a", "b"):
        env = RayEnvironment("twin")  # the same name and pipeline: only the job tells them apart
        results[label] = env.from_batch([(label, i) for i in range(300)]).map(WithJob).collect()
        jobs[label] = env.submit()
    assert [finish(job) for job in jobs.values()] == ["finished", "finished"]

    out = [record for label in jobs for record in results[label]]
    for label, job in jobs.items():
        assert sorted(i for job_id, lab, i in out if job_id == job.job_id) == list(range(300))
        assert {lab for job_id, lab, _ in out if job_id == job.job_id} == {label}
    first, second = (job.run._control.dispatcher for job in jobs.values())
    assert first.backend.namespace != second.backend.namespace
    assert not set(first.graph.queue_owners) & set(second.graph.queue_owners)
    for job in jobs.values():
        assert_cleaned_up(job)


class Placement(MapFunction):
    """Emits the Ray resources assigned to the actor it runs in."""

    def execute(self, value: int) -> tuple[str, dict[str, float]]:
        return self.name, ray.get_runtime_context().get_assigned_resources()


def test_a_dozen_actors_start_with_no_cpu_reserved_and_resources_reach_their_actor():
    env = RayEnvironment("dozen", config={"transport": "rpc"})
    stream = env.from_batch(list(range(60)), parallelism=2)
    for _ in range(3):
        stream = stream.map(lambda x: x + 1, parallelism=3)
    results = stream.map(Placement).map(Placement, resources={"num_cpus": 1}).collect()
    job = env.submit()
    assert finish(job) == "finished"
    assert len(job.run._control.dispatcher.tasks) == 13

    out = list(results)
    assert len(out) == 60
    # The second Placement sees what the first emitted: (name, resources) of the first, then its own.
    assert {(name, tuple(resources.items())) for name, resources in out} == {("Placement2_0", (("CPU", 1.0),))}
