"""Helpers for pipelines on RayEnvironment, where every task and service is an actor.

Functions run in other processes, so they cannot append to a list of the test:
tests read records back with `stream.collect()`.
"""

from __future__ import annotations

import ray
from ray._private import state

from sage.kernel.api.job import Job
from sage.kernel.runtime.communication.queue_descriptor.ray_queue_manager import ray_namespace

JOB_TIMEOUT = 60.0
"""Seconds any test waits for a job; far above what a passing test needs (actors start in ~1 s each)."""



@ray.remote(num_cpus=0)
class Latch:
    """A one-shot event across processes: `wait()` returns once some actor called `set()`."""

    def __init__(self) -> None:
        import asyncio

        self.event = asyncio.Event()

    async def set(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


def finish(job: Job, timeout: float = JOB_TIMEOUT) -> str:
    """Wait for `job` to end on its own; cancel it (and fail the test) if it does not."""
    try:
        return job.wait(timeout)
    finally:
        if not job.done():
            job.cancel()


def assert_cleaned_up(job: Job) -> None:
    """No actor of `job` is alive and no named actor (Ray queue, queue manager) is left in its namespace.

    Waits for the backend's cleanup first (`shutdown()` returns once it is
    done, also when another thread started it). Reads actor states from Ray's
    GCS: the `ray.util.state` API needs the dashboard, which the test Ray runs
    without.
    """
    backend = job.run._control.dispatcher.backend
    backend.shutdown()
    ours = {actor._actor_id.hex() for actor in backend._actors.values()}
    assert not ours & alive_actor_ids(), f"actors of {job.job_id} still alive: {sorted(ours & alive_actor_ids())}"
    left = [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == ray_namespace(backend.namespace)]
    assert not left, f"named actors of {job.job_id} left: {left}"


def alive_actor_ids() -> set[str]:
    """Ids of every live actor of the cluster (from Ray's GCS)."""
    return {actor_id for actor_id, info in state.actors().items() if info["State"] == "ALIVE"}
