"""Jobs on a Ray cluster of two nodes, run as a driver script by test_ray_multinode.py.

    RAY_ADDRESS=<cluster> python multinode_job.py SCENARIO TRANSPORT

The cluster's head node has the custom resource `node_a`, the other node
`node_b`; operators are pinned to one or the other with
`resources={"resources": {"node_a": 1}}`. The script prints one line,
`RESULT <json>`, with what the test checks:

- `pinned`: a source and a keyed counter on node_a, a map on node_b that
  calls a service on node_a for every record; every record with the node
  each step ran on (by custom resource), the service's answer and the
  counter's count.
- `kill`: a source on node_a stops half-way until the driver lets it go on;
  the driver kills the process of the map actor on node_b meanwhile. Without
  checkpoints the job fails (the error is printed); with `--checkpoints` it
  restarts from its last checkpoint and the records are printed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
from typing import Any

import ray

from sage.kernel import JobFailedError, RayEnvironment, StopSignal
from sage.kernel.api.function import MapFunction, SourceFunction
from sage.kernel.api.job import Job
from sage.kernel.api.service import BaseService
from sage.kernel.testing import wait_until

N = 600
KEYS = 7
JOB_TIMEOUT = 180.0


def on(node: str) -> dict[str, Any]:
    return {"resources": {node: 1}}


def node_label() -> str:
    """The custom resource (node_a or node_b) of the node this process runs on."""
    node_id = ray.get_runtime_context().get_node_id()
    (resources,) = [n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id]
    return "node_a" if "node_a" in resources else "node_b"


class Square(BaseService):
    def setup(self) -> None:
        self.node = node_label()

    def process(self, x: int) -> tuple[int, str]:
        return x * x, self.node


class CallSquare(MapFunction):
    def open(self) -> None:
        self.node = node_label()

    def execute(self, x: int) -> dict[str, Any]:
        square, service_node = self.call_service("square", x)
        return {"x": x, "square": square, "service_node": service_node, "map_node": self.node}


class KeyedCount(MapFunction):
    def open(self) -> None:
        self.node = node_label()
        self.counts: collections.Counter[int] = collections.Counter()

    def execute(self, record: dict[str, Any]) -> dict[str, Any]:
        key = record["x"] % KEYS
        self.counts[key] += 1
        return {**record, "count": self.counts[key], "count_node": self.node, "counter": self.name}


def pinned(transport: str) -> dict[str, Any]:
    env = RayEnvironment("multinode-pinned", config={"transport": transport})
    env.register_service("square", Square, resources=on("node_a"))
    results = (env.from_batch(list(range(N)), resources=on("node_a"))
               .map(CallSquare, parallelism=2, resources=on("node_b"))
               .keyby(lambda record: record["x"] % KEYS, resources=on("node_b"))
               .map(KeyedCount, parallelism=2, resources=on("node_a"))
               .collect())
    env.submit(autostop=True)
    return {"records": list(results)}


@ray.remote(num_cpus=0)
class Gate:
    """Where the source says it reached its halfway mark, and hears when it may go on."""

    def __init__(self) -> None:
        import asyncio

        self.reached = asyncio.Event()
        self.open = False

    async def reach(self) -> None:
        self.reached.set()

    async def wait_reached(self) -> None:
        await self.reached.wait()

    async def let_go(self) -> None:
        self.open = True

    async def is_open(self) -> bool:
        return self.open


class HalfwaySource(SourceFunction):
    """Emits 0..n-1; at n/2 it has nothing to give until the gate is open (checkpoints go on meanwhile)."""

    def __init__(self, n: int, gate: Any) -> None:
        self.n, self.gate, self.position = n, gate, 0

    def execute(self) -> Any:
        if self.position == self.n:
            return StopSignal("done")
        if self.position == self.n // 2 and not ray.get(self.gate.is_open.remote()):
            ray.get(self.gate.reach.remote())
            return None
        self.position += 1
        return self.position - 1

    def get_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class Where(MapFunction):
    def open(self) -> None:
        self.node = node_label()

    def execute(self, x: int) -> tuple[int, str, int]:
        return x, self.node, os.getpid()


def completed_checkpoints(job: Job) -> int:
    completed: int = (job.metrics()["job"]["checkpoints"] or {}).get("completed", 0)
    return completed


def kill(transport: str, checkpoints: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"transport": transport}
    if checkpoints:
        config.update(checkpoint_interval=0.1, checkpoint_dir=sys.argv[3], restart_attempts=1, restart_delay=0.1)
    gate = Gate.remote()
    env = RayEnvironment("multinode-kill", config=config)
    results = (env.from_source(HalfwaySource, N, gate, resources=on("node_a"))
               .map(Where, resources=on("node_b"))
               .collect())
    job = env.submit()
    ray.get(gate.wait_reached.remote(), timeout=JOB_TIMEOUT)
    if checkpoints:  # a checkpoint completed after the halfway mark holds every record before it
        before = completed_checkpoints(job)
        wait_until(lambda: completed_checkpoints(job) > before, JOB_TIMEOUT, "no checkpoint completed")
    victim = job.run._control.dispatcher.tasks["Where_0"].actor
    pid, node = ray.get(victim.__ray_call__.remote(lambda actor: (os.getpid(), node_label())))
    os.kill(pid, signal.SIGKILL)
    ray.get(gate.let_go.remote())
    outcome: dict[str, Any] = {"killed_on": node}
    try:
        job.wait(JOB_TIMEOUT)
    except JobFailedError as exc:
        outcome.update(error=str(exc), task=exc.task_name, cause=str(exc.__cause__))
        return outcome
    outcome.update(records=list(results), restarts=job.metrics()["job"]["restarts"],
                   restored_from=job.metrics()["job"]["restored_from"])
    return outcome


def main() -> None:
    scenario, transport = sys.argv[1], sys.argv[2]
    if scenario == "pinned":
        result = pinned(transport)
    elif scenario == "kill":
        result = kill(transport, checkpoints=len(sys.argv) > 3)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
