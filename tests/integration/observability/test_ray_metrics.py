"""The same metrics from a job on Ray: counters from every actor, shares, Prometheus text."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .test_metrics import assert_shares_add_up


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_job_reports_shares_rates_and_prometheus_text(ray_cluster) -> None:
    from sage.kernel import RayEnvironment

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the lambdas below travel to the actors
    env = RayEnvironment("ray-metrics")
    env.from_batch(list(range(3000))).map(lambda x: x * 2).sink(lambda x: None)  # one actor per task
    job = env.submit()
    assert job.wait(120) == "finished"

    metrics = job.metrics()
    assert set(metrics) == {"from_batch_0", "map_0", "sink_0", "job"}
    assert_shares_add_up(metrics)
    assert metrics["map_0"]["records_in"] == metrics["sink_0"]["records_in"] == 3000
    assert metrics["map_0"]["operator"] == "map" and metrics["map_0"]["parallel_index"] == 0
    families = {f.name: f for f in text_string_to_metric_families(job.metrics(format="prometheus"))}
    sink = [s for s in families["sage_task_records_in"].samples if s.labels["task"] == "sink_0"]
    assert [s.value for s in sink] == [3000]
