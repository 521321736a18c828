"""RayQueueDescriptor against a real local Ray (the session's `ray_cluster`)."""

from __future__ import annotations

import pickle
import queue
import subprocess
import sys
import uuid

import pytest
import ray

from sage.kernel.runtime.communication import BatchFull, Packet, resolve_descriptor
from sage.kernel.runtime.communication.queue_descriptor import BaseQueueDescriptor, RayQueueDescriptor
from sage.kernel.runtime.communication.queue_descriptor.ray_queue_descriptor import shutdown_ray_queues
from sage.kernel.runtime.communication.queue_descriptor.ray_queue_manager import (
    MANAGER_NAME,
    queue_actor_name,
    ray_namespace,
)

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0)
class Peer:
    """An actor that uses descriptors it received pickled, or as dicts to resolve."""

    def __init__(self) -> None:
        self._queues: dict[str, BaseQueueDescriptor] = {}

    def attach(self, name: str, descriptor: BaseQueueDescriptor | dict) -> bool:
        if isinstance(descriptor, dict):
            descriptor = resolve_descriptor(descriptor)
        self._queues[name] = descriptor
        return descriptor.is_initialized()

    def put_many(self, name: str, items: list, timeout: float | None = None) -> None:
        self._queues[name].put_many(items, timeout)

    def get_many(self, name: str, max_items: int, timeout: float | None) -> list:
        return self._queues[name].get_many(max_items, timeout)


@pytest.fixture(scope="module")
def peers(ray_cluster):
    """Two Peer actors shared by the module's tests (actor start-up is the slow part)."""
    actors = [Peer.remote(), Peer.remote()]
    yield actors
    for actor in actors:
        ray.kill(actor)


@pytest.fixture
def make_namespace(ray_cluster):
    """Factory for fresh namespaces whose queues and manager are shut down after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(f"test-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for namespace in made:
        shutdown_ray_queues(namespace)


@pytest.fixture(scope="module")
def namespace(ray_cluster):
    """One namespace for the module's tests (queue ids are unique; the manager starts once)."""
    shared = f"test-{uuid.uuid4().hex[:12]}"
    yield shared
    shutdown_ray_queues(shared)


def _named_actors(namespace: str) -> set[str]:
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == ray_namespace(namespace)
    }


# ---------------------------------------------------------------------------- without Ray
def test_to_dict_carries_namespace_and_resolves_to_an_equal_descriptor():
    descriptor = RayQueueDescriptor(maxsize=7, queue_id="q1", namespace="job-1", metadata={"k": 1})
    data = descriptor.to_dict()
    assert data == {
        "queue_type": "ray_queue",
        "queue_id": "q1",
        "maxsize": 7,
        "metadata": {"k": 1},
        "namespace": "job-1",
    }
    rebuilt = resolve_descriptor(data)
    assert isinstance(rebuilt, RayQueueDescriptor) and rebuilt == descriptor
    assert rebuilt != RayQueueDescriptor(maxsize=7, queue_id="q1", namespace="job-2")
    clone = descriptor.clone()
    assert clone.namespace == "job-1" and clone.queue_id != "q1"
    with pytest.raises(ValueError, match="namespace"):
        RayQueueDescriptor(namespace="")


def test_use_without_ray_init_raises_runtime_error_naming_the_fix():
    code = (
        "from sage.kernel.runtime.communication.queue_descriptor import RayQueueDescriptor\n"
        "try:\n"
        "    RayQueueDescriptor(maxsize=1).put(1)\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "ray.init()" in result.stdout


# ---------------------------------------------------------------------------- with Ray
def test_facade_round_trip(namespace):
    descriptor = RayQueueDescriptor(maxsize=10, namespace=namespace)
    descriptor.put("a")
    descriptor.put_nowait({"b": 1})
    assert descriptor.is_initialized()
    assert descriptor.qsize() == 2 and not descriptor.empty() and not descriptor.full()
    assert descriptor.get(timeout=5) == "a"
    assert descriptor.get_nowait() == {"b": 1}
    assert descriptor.empty()


def test_put_many_accepts_up_to_the_free_room_and_reports_it(namespace):
    descriptor = RayQueueDescriptor(maxsize=5, namespace=namespace)
    items = [Packet(i, partition_key=i, partition_strategy="hash") for i in range(8)]
    with pytest.raises(BatchFull) as full:
        descriptor.put_many(items, timeout=0)
    assert full.value.accepted == 5
    assert descriptor.full()
    with pytest.raises(BatchFull) as full:
        descriptor.put_many(items[5:], timeout=0.1)
    assert full.value.accepted == 0
    assert descriptor.get_many(3, timeout=1) == items[:3]
    descriptor.put_many(items[5:], timeout=0)
    assert descriptor.get_many(100, timeout=1) == items[3:]


def test_full_and_empty_at_their_timeouts(namespace):
    descriptor = RayQueueDescriptor(maxsize=1, namespace=namespace)
    with pytest.raises(queue.Empty):
        descriptor.get(timeout=0.2)
    with pytest.raises(queue.Empty):
        descriptor.get_nowait()
    with pytest.raises(queue.Empty):
        descriptor.get_many(10, timeout=0.2)
    descriptor.put(1)
    with pytest.raises(queue.Full):
        descriptor.put(2, timeout=0.2)
    with pytest.raises(queue.Full):
        descriptor.put_nowait(2)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        descriptor.get(timeout=-1)
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        descriptor.get_many(0)
    assert descriptor.get_many(10, timeout=0) == [1]


def test_descriptor_reaches_the_same_queue_pickled_into_an_actor_and_as_a_dict(namespace, peers):
    descriptor = RayQueueDescriptor(maxsize=100, namespace=namespace)
    descriptor.put("from driver")
    copy = pickle.loads(pickle.dumps(descriptor))
    assert not copy.is_initialized() and copy == descriptor
    producer, consumer = peers
    assert ray.get(consumer.attach.remote("q", descriptor)) is False  # the live handle stayed home
    ray.get(producer.attach.remote("q", descriptor.to_dict()))
    assert ray.get(consumer.get_many.remote("q", 10, 5)) == ["from driver"]
    ray.get(producer.put_many.remote("q", [Packet(1), Packet(2)]))
    assert copy.get_many(10, timeout=5) == [Packet(1), Packet(2)]


def test_same_queue_id_in_two_namespaces_names_two_queues(make_namespace):
    first = RayQueueDescriptor(queue_id="input", namespace=make_namespace())
    second = RayQueueDescriptor(queue_id="input", namespace=make_namespace())
    first.put("first")
    with pytest.raises(queue.Empty):
        second.get_nowait()
    second.put("second")
    assert first.get_nowait() == "first"
    assert second.get_nowait() == "second"


def test_blocked_get_wakes_when_an_item_is_put(namespace, peers):
    descriptor = RayQueueDescriptor(namespace=namespace)
    _, consumer = peers
    ray.get(consumer.attach.remote("wake", descriptor))
    pending = consumer.get_many.remote("wake", 10, 30)
    ready, _ = ray.wait([pending], timeout=0.5)
    assert not ready  # it waits for an item
    descriptor.put_many(["x", "y"])
    assert ray.get(pending, timeout=10) == ["x", "y"]


def test_full_queue_blocks_the_producer_until_there_is_room_and_loses_nothing(namespace, peers):
    descriptor = RayQueueDescriptor(maxsize=4, namespace=namespace)
    producer, _ = peers
    ray.get(producer.attach.remote("bp", descriptor))
    pending = producer.put_many.remote("bp", list(range(50)), None)
    received: list[int] = []
    while len(received) < 50:
        received += descriptor.get_many(7, timeout=10)
    ray.get(pending, timeout=10)
    assert received == list(range(50))


def test_close_kills_the_queue_and_a_later_use_starts_an_empty_one(make_namespace):
    namespace = make_namespace()
    descriptor = RayQueueDescriptor(queue_id="closing", namespace=namespace)
    holder = RayQueueDescriptor(queue_id="closing", namespace=namespace)
    descriptor.put("dropped")
    assert holder.qsize() == 1
    descriptor.close()
    assert not descriptor.is_initialized()
    assert _named_actors(namespace) == {MANAGER_NAME}
    with pytest.raises(ray.exceptions.RayActorError):
        holder.qsize()  # never silently a new queue
    assert descriptor.qsize() == 0


def test_shutdown_ray_queues_leaves_no_named_actor_behind(make_namespace):
    namespace = make_namespace()
    descriptors = [RayQueueDescriptor(namespace=namespace) for _ in range(2)]
    for descriptor in descriptors:
        descriptor.put("left over")
    assert _named_actors(namespace) == {MANAGER_NAME} | {queue_actor_name(d.queue_id) for d in descriptors}
    closed = shutdown_ray_queues(namespace)
    assert sorted(closed) == sorted(d.queue_id for d in descriptors)
    assert _named_actors(namespace) == set()
    assert shutdown_ray_queues(namespace) == []
