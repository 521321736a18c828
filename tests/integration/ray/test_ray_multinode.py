"""A real two-node Ray cluster on this machine: operators pinned to nodes, services across nodes, a node's actor killed.

The cluster (`ray.cluster_utils.Cluster`, every node on 127.0.0.1) is its own:
the head node has the custom resource `node_a`, the second node `node_b`.
This process stays on the session's Ray (one `ray.init` per process), so
each job runs in a driver subprocess joined to the cluster through
RAY_ADDRESS (multinode_job.py) and prints what it saw.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DRIVER = pathlib.Path(__file__).with_name("multinode_job.py")
DRIVER_TIMEOUT = 300.0
"""Seconds a driver may run; far above what one needs."""

N, KEYS = 600, 7  # as in multinode_job.py


@pytest.fixture(scope="module")
def two_nodes(ray_cluster):
    """A head node with resource node_a and a second node with node_b; yields the cluster's address."""
    from ray._private.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    # Cluster() records its address for `ray.init()` without one in this file: other Ray users of
    # the machine must not find this test's cluster there, so the file is put back as it was.
    current = pathlib.Path(get_ray_address_file(None))
    before = current.read_text() if current.exists() else None
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 4, "resources": {"node_a": 100}, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=4, resources={"node_b": 100}, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        if before is None:
            current.unlink(missing_ok=True)
        else:
            current.write_text(before)
        yield cluster.address
    finally:
        cluster.shutdown()


def run(two_nodes: str, *args: str) -> dict:
    env = {**os.environ, "RAY_ADDRESS": two_nodes}
    done = subprocess.run([sys.executable, str(DRIVER), *args], env=env, capture_output=True, text=True,
                          timeout=DRIVER_TIMEOUT, check=False)
    assert done.returncode == 0, f"the driver failed:\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result: dict = json.loads(line[len("RESULT "):])
    return result


@pytest.mark.parametrize("transport", ["rpc", "ray"])
def test_operators_pinned_to_two_nodes_give_exact_results_and_call_a_service_across_nodes(two_nodes, transport):
    records = run(two_nodes, "pinned", transport)["records"]
    assert sorted(r["x"] for r in records) == list(range(N))
    assert all(r["square"] == r["x"] ** 2 for r in records)
    assert {(r["map_node"], r["service_node"], r["count_node"]) for r in records} == {("node_b", "node_a", "node_a")}
    # Keyed state across nodes: each key on one counter, which counted every record of it.
    counters: dict[int, set[str]] = collections.defaultdict(set)
    counts: dict[int, list[int]] = collections.defaultdict(list)
    for r in records:
        counters[r["x"] % KEYS].add(r["counter"])
        counts[r["x"] % KEYS].append(r["count"])
    assert all(len(names) == 1 for names in counters.values())
    assert all(sorted(seen) == list(range(1, len(seen) + 1)) for seen in counts.values())


@pytest.mark.parametrize("transport", ["rpc", "ray"])
def test_killing_an_actor_on_the_second_node_fails_the_job_naming_its_task(two_nodes, transport):
    outcome = run(two_nodes, "kill", transport)
    assert outcome["killed_on"] == "node_b"
    assert outcome["task"] == "Where_0" and "Where_0" in outcome["error"]
    assert "the actor of Where_0 died" in outcome["cause"]


@pytest.mark.parametrize("transport", ["rpc", "ray"])
def test_killing_an_actor_on_the_second_node_restarts_the_job_from_its_last_checkpoint(two_nodes, tmp_path, transport):
    outcome = run(two_nodes, "kill", transport, str(tmp_path / "checkpoints"))
    assert outcome["killed_on"] == "node_b"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["restarts"] == 1 and outcome["restored_from"] >= 1
    records = outcome["records"]
    assert sorted(x for x, _, _ in records) == list(range(N))  # every record once, none repeated
    assert {node for _, node, _ in records} == {"node_b"}
    assert len({pid for _, _, pid in records}) == 2  # before and after the restart
