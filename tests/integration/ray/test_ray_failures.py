"""Failures on RayEnvironment: user exceptions, dead actors, and functions that cannot travel."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import ray
from ray_job_support import Latch, alive_actor_ids, assert_cleaned_up, finish

from sage.kernel import JobFailedError, PipelineError, RayEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService
from sage.kernel.runtime.job_manager import job_manager

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DEATH_NOTICE = 10.0
"""The issue's bound: a dead actor fails the job within this many seconds."""


def test_user_exception_fails_the_job_naming_the_task_with_the_original_type():
    env = RayEnvironment("user-error", config={"transport": "rpc"})
    env.from_batch(list(range(10))).map(lambda x: 1 // (x - 5)).sink(lambda x: None)
    job = env.submit()
    with pytest.raises(JobFailedError) as info:
        finish(job)
    assert info.value.task_name == "map_0" and "map_0" in str(info.value)
    cause = info.value.__cause__
    assert type(cause) is ZeroDivisionError
    assert any("raised in map_0" in note and "ZeroDivisionError" in note for note in cause.__notes__)
    assert_cleaned_up(job)


class SignalFirst(MapFunction):
    """Passes records on; sets `latch` at the first one (records are flowing through this actor)."""

    def __init__(self, latch: Any) -> None:
        self.latch = latch
        self.signalled = False

    def execute(self, x: int) -> int:
        if not self.signalled:
            ray.get(self.latch.set.remote())
            self.signalled = True
        return x


def test_killing_a_task_actor_fails_the_job_naming_it_within_ten_seconds():
    latch = Latch.remote()
    try:
        env = RayEnvironment("killed", config={"transport": "rpc"})
        env.from_source(lambda: 1).map(SignalFirst, latch).sink(lambda x: None)  # unbounded
        job = env.submit()
        ray.get(latch.wait.remote(), timeout=60)
        killed_at = time.monotonic()
        ray.kill(job.run._control.dispatcher.tasks["SignalFirst_0"].actor, no_restart=True)
        with pytest.raises(JobFailedError) as info:
            finish(job, timeout=DEATH_NOTICE)
        assert time.monotonic() - killed_at < DEATH_NOTICE
        assert info.value.task_name == "SignalFirst_0" and "SignalFirst_0" in str(info.value)
        assert "died" in str(info.value.__cause__)
        assert_cleaned_up(job)
    finally:
        ray.kill(latch)


class Locked(MapFunction):
    guard = threading.Lock()  # class state travels with a class shipped by value; a lock cannot

    def execute(self, x: int) -> int:
        return x


class LockedService(BaseService):
    guard = threading.Lock()


def _generator_source(env: RayEnvironment) -> None:
    env.from_batch(x for x in range(3)).sink(lambda x: None)


def _lock_in_function(env: RayEnvironment) -> None:
    env.from_batch([1]).map(Locked).sink(lambda x: None)


def _lock_in_service(env: RayEnvironment) -> None:
    env.register_service("guarded", LockedService)
    env.from_batch([1]).sink(lambda x: None)


@pytest.mark.parametrize(("build", "named", "refused"), [
    (_generator_source, "operator 'from_batch_0'", "generator"),
    (_lock_in_function, "operator 'Locked_0'", "_thread.lock"),
    (_lock_in_service, "service 'guarded'", "_thread.lock"),
])
@pytest.mark.parametrize("transport", ["ray", "rpc"])
def test_what_cannot_travel_fails_at_submit_naming_it_and_starts_nothing(build, named, refused, transport):
    env = RayEnvironment("unshippable", config={"transport": transport})
    build(env)
    jobs, alive = job_manager().running_jobs(), alive_actor_ids()
    with pytest.raises(PipelineError, match=f"{named} cannot be shipped to a Ray actor: .*'{refused}'"):
        env.submit()
    assert job_manager().running_jobs() == jobs
    assert alive_actor_ids() == alive


def test_resource_options_ray_rejects_fail_at_submit_naming_the_operator():
    env = RayEnvironment("bad-resources")
    env.from_batch([1]).map(lambda x: x, resources={"num_cpu": 1}).sink(lambda x: None)
    jobs, alive = job_manager().running_jobs(), alive_actor_ids()
    with pytest.raises(PipelineError, match=r"operator map_0: bad Ray resources .*num_cpu"):
        env.submit()
    assert job_manager().running_jobs() == jobs
    assert alive_actor_ids() == alive


@pytest.mark.parametrize("transport", ["ray", "rpc"])
@pytest.mark.parametrize(("resources", "missing"), [
    ({"resources": {"node_z": 1}}, "node_z=1"),
    ({"num_gpus": 2}, "GPU=2"),
    ({"num_cpus": 1000}, "CPU=1000"),
])
def test_an_operator_no_node_can_place_fails_at_submit_naming_it_and_the_resource(transport, resources, missing):
    env = RayEnvironment("unplaceable", config={"transport": transport})
    env.from_batch([1, 2]).map(lambda x: x, resources=resources).sink(lambda x: None)
    jobs, alive = job_manager().running_jobs(), alive_actor_ids()
    with pytest.raises(PipelineError, match=rf"operator 'map' \(instance map_0\) cannot be placed: it asks for "
                                            rf"{missing}, which no node of the Ray cluster has \(nodes: "):
        env.submit()
    assert job_manager().running_jobs() == jobs
    assert alive_actor_ids() == alive


def test_a_service_whose_resources_exist_on_no_single_node_is_named():
    env = RayEnvironment("unplaceable-service")
    env.register_service("big", LockedService.__base__, resources={"num_cpus": 1, "num_gpus": 1})
    env.from_batch([1]).sink(lambda x: None)
    with pytest.raises(PipelineError, match=r"service 'big' cannot be placed: it asks for GPU=1, which no node"):
        env.submit()


@ray.remote(num_cpus=0)
class Holder:
    """Holds resources for as long as it lives."""


def test_an_operator_whose_resources_stay_taken_fails_the_submit_when_start_up_times_out(monkeypatch, ray_cluster):
    from sage.kernel.runtime.backend import ray_backend

    monkeypatch.setattr(ray_backend, "ACTOR_START_TIMEOUT", 1.0)
    cpus = ray.cluster_resources()["CPU"]
    holder = Holder.options(num_cpus=cpus).remote()  # every CPU of the cluster, placeable but taken
    try:
        ray.get(holder.__ray_ready__.remote(), timeout=60)
        env = RayEnvironment("starved", config={"transport": "ray"})
        env.from_batch([1]).map(lambda x: x, resources={"num_cpus": 1}).sink(lambda x: None)
        jobs, alive = job_manager().running_jobs(), alive_actor_ids()
        with pytest.raises(PipelineError, match=r"operator 'map' \(instance map_0\) was not placed within 1 s: "
                                                r"it needs \{'CPU': 1\}; free in the cluster now: "):
            env.submit()
        assert job_manager().running_jobs() == jobs
        assert alive_actor_ids() <= alive
    finally:
        ray.kill(holder)
