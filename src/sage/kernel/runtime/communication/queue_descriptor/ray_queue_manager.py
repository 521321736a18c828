"""Where Ray queues live and how they are found: the `RayQueueManager` actor.

Imports Ray at load time; `ray_queue_descriptor` imports it only once a descriptor first
touches Ray, so `import sage.kernel` stays free of Ray.

Layout in the cluster, per descriptor namespace `ns`:

- one detached `RayQueueManager` actor named "RayQueueManager" in the Ray namespace
  "sage_queues.<ns>": it maps queue ids to queue actors (get-or-create) and closes them;
- one async `QueueActor` per queue, named "queue.<queue_id>" in the same Ray namespace,
  created and owned by the manager, so it also dies with the manager.

Clients ask the manager once for a queue's actor handle, then put and get on the queue
actor directly, one remote call per batch: the manager is never on the data path.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from .ray_queue_actor import RayQueueClient, RemoteQueueActor

MANAGER_NAME = "RayQueueManager"
RAY_NAMESPACE_PREFIX = "sage_queues."
KILL_TIMEOUT = 10.0
"""Seconds to wait for a killed actor to be reported dead (its name is free again then)."""


def ray_namespace(namespace: str) -> str:
    """The Ray namespace holding the manager and queue actors of descriptor `namespace`."""
    return RAY_NAMESPACE_PREFIX + namespace


def queue_actor_name(queue_id: str) -> str:
    """The Ray actor name of queue `queue_id` inside its namespace."""
    return "queue." + queue_id


def kill_and_wait(handles: list[Any], timeout: float = KILL_TIMEOUT) -> None:
    """Kill actors and return once Ray reports each dead (its name is released then).

    Raises `TimeoutError` if one is not reported dead within `timeout` seconds.
    """
    for handle in handles:
        ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + timeout
    for handle in handles:
        # A call on a killed actor fails once its death is known: that is the event
        # awaited. A call that slipped in before the kill landed just answers; ask again.
        while True:
            remaining = deadline - time.monotonic()
            try:
                ray.get(handle.__ray_ready__.remote(), timeout=max(0.0, remaining))
            except ray.exceptions.RayActorError:
                break
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"killed actor {handle} not reported dead within {timeout} s") from None
            if remaining <= 0:
                raise TimeoutError(f"killed actor {handle} still answers after {timeout} s")


class RayQueueManager:
    """The lookup service of one namespace: queue id -> queue actor.

    A detached Ray actor, so it outlives whichever process happened to create it;
    its calls run one at a time, so get-or-create is atomic across the cluster.
    """

    def __init__(self, ray_namespace: str) -> None:
        self._ray_namespace = ray_namespace
        self._queues: dict[str, Any] = {}

    def get_queue(self, queue_id: str, maxsize: int) -> Any:
        """The queue actor of `queue_id`, created with `maxsize` if it does not exist yet."""
        handle = self._queues.get(queue_id)
        if handle is None:
            handle = RemoteQueueActor.options(
                name=queue_actor_name(queue_id), namespace=self._ray_namespace
            ).remote(maxsize)
            self._queues[queue_id] = handle
        return handle

    def close_queue(self, queue_id: str) -> bool:
        """Kill the queue actor of `queue_id` (items in it are dropped); False if unknown."""
        handle = self._queues.pop(queue_id, None)
        if handle is None:
            return False
        kill_and_wait([handle])
        return True

    def close_all(self) -> list[str]:
        """Kill every queue actor of the namespace; return their queue ids."""
        queue_ids = list(self._queues)
        kill_and_wait(list(self._queues.values()))
        self._queues.clear()
        return queue_ids


_RemoteManager: Any = ray.remote(num_cpus=0)(RayQueueManager)


def _existing_manager(namespace: str) -> Any:
    try:
        return ray.get_actor(MANAGER_NAME, namespace=ray_namespace(namespace))
    except ValueError:
        return None


def attach_queue(namespace: str, queue_id: str, maxsize: int) -> RayQueueClient:
    """Get or create the namespace's manager, then the queue: one lookup, one remote call."""
    manager = _RemoteManager.options(
        name=MANAGER_NAME,
        namespace=ray_namespace(namespace),
        lifetime="detached",
        get_if_exists=True,
    ).remote(ray_namespace(namespace))
    return RayQueueClient(ray.get(manager.get_queue.remote(queue_id, maxsize)))


def close_queue(namespace: str, queue_id: str) -> bool:
    """Kill one queue actor and forget it; False if the namespace has no such queue."""
    manager = _existing_manager(namespace)
    if manager is None:
        return False
    closed: bool = ray.get(manager.close_queue.remote(queue_id))
    return closed


def shutdown_namespace(namespace: str) -> list[str]:
    """Kill every queue actor of `namespace`, then its manager; return the closed queue ids."""
    manager = _existing_manager(namespace)
    if manager is None:
        return []
    queue_ids: list[str] = ray.get(manager.close_all.remote())
    kill_and_wait([manager])
    return queue_ids
