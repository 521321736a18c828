"""Fault tolerance on Ray: an injected failure and a killed actor restart from the last checkpoint, exactly once."""

from __future__ import annotations

import pathlib
import sys
from collections import Counter

import pytest
import ray
from ray_job_support import finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import FileSink, FileSource
from sage.kernel.testing import wait_until

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "recovery"))
from wordcount_job import Count, committed_output, expected_output, final_counts, write_input

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wordcount(tmp_path: pathlib.Path, transport: str, fail_at: int = 0) -> RayEnvironment:
    env = RayEnvironment("recovery-wordcount", config={
        "checkpoint_interval": 0.2, "checkpoint_dir": str(tmp_path / "ck"), "restart_attempts": 2,
        "restart_delay": 0.1, "transport": transport, "batch_size": 256, "queue_maxsize": 2048})
    (env.from_batch(FileSource, str(tmp_path / "in"), parallelism=2)
        .flatmap(lambda line: line.split())
        .keyby(lambda word: word)
        .map(Count, fail_at, str(tmp_path / "failed"), parallelism=2)
        .sink(FileSink, str(tmp_path / "out"), parallelism=2))
    return env


@pytest.mark.parametrize("transport", ["ray", "rpc"])
def test_an_injected_failure_on_ray_restarts_and_the_output_is_exactly_once(tmp_path, transport):
    totals = write_input(str(tmp_path / "in"), files=2, lines=3000)
    job = wordcount(tmp_path, transport, fail_at=4000).submit()
    assert finish(job, 240) == "finished"
    assert (tmp_path / "failed").exists() and job.metrics()["job"]["restarts"] == 1
    assert Counter(committed_output(str(tmp_path / "out"))) == expected_output(totals)
    assert final_counts(str(tmp_path / "ck")) == totals


def test_a_killed_task_actor_restarts_the_job_from_its_last_checkpoint(tmp_path):
    totals = write_input(str(tmp_path / "in"), files=2, lines=20_000)
    job = wordcount(tmp_path, "ray").submit()
    wait_until(lambda: (job.metrics()["job"]["checkpoints"] or {}).get("completed", 0) >= 1, 120,
               "no checkpoint completed")
    victim = job.run._control.dispatcher.tasks["Count_1"]
    ray.kill(victim.actor, no_restart=True)
    assert finish(job, 240) == "finished"
    assert job.metrics()["job"]["restarts"] == 1
    assert Counter(committed_output(str(tmp_path / "out"))) == expected_output(totals)
    assert final_counts(str(tmp_path / "ck")) == totals
