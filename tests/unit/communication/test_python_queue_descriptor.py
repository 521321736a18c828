"""PythonQueueDescriptor: lazy shared queues, the queue facade, batches, serialization, identity."""

from __future__ import annotations

import json
import pickle
import queue
import threading
import time

import pytest

from sage.kernel.runtime.communication import BatchFull, PythonQueueDescriptor, resolve_descriptor

from .support import drain, first_access_from_threads, wait_until_parked

WAIT = 0.05  # seconds a Full/Empty test waits; long enough to show it blocked, short for the suite


# ---------------------------------------------------------------------- construction and laziness
def test_ids_are_generated_unique_and_kept_when_given(make_queue):
    ids = {make_queue().queue_id for _ in range(100)}
    assert len(ids) == 100
    assert make_queue(queue_id="orders").queue_id == "orders"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"maxsize": -1}, "maxsize"),
        ({"maxsize": True}, "maxsize"),
        ({"maxsize": 2.0}, "maxsize"),
        ({"queue_id": ""}, "queue_id"),
        ({"queue_id": 5}, "queue_id"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PythonQueueDescriptor(**kwargs)


def test_bad_metadata_is_named():
    with pytest.raises(ValueError, match="metadata must be a dict, got list"):
        PythonQueueDescriptor(metadata=[("a", 1)])


def test_queue_is_created_on_first_access_only(make_queue):
    descriptor = make_queue(maxsize=3)
    assert not descriptor.is_initialized()
    repr(descriptor), descriptor.to_dict(), descriptor.clone(), pickle.dumps(descriptor)
    assert not descriptor.is_initialized()
    descriptor.put("x")
    assert descriptor.is_initialized()
    assert descriptor.queue_instance.maxsize == 3


def test_threads_racing_on_first_access_get_the_same_queue(make_queue):
    for _ in range(20):
        seen = first_access_from_threads(make_queue())
        assert all(q is seen[0] for q in seen)


def test_descriptors_with_the_same_id_share_one_queue(make_queue):
    a = make_queue(maxsize=5, queue_id="shared-id-test")
    b = PythonQueueDescriptor(maxsize=5, queue_id="shared-id-test")
    a.put(1)
    assert b.get(timeout=1) == 1
    assert a.queue_instance is b.queue_instance


# ---------------------------------------------------------------------- queue facade
def test_full_and_empty_follow_queue_queue_with_timeouts(make_queue):
    descriptor = make_queue(maxsize=1)
    assert descriptor.empty() and not descriptor.full()
    descriptor.put("a")
    assert descriptor.full() and descriptor.qsize() == 1

    started = time.monotonic()
    with pytest.raises(queue.Full):
        descriptor.put("b", timeout=WAIT)
    assert time.monotonic() - started >= WAIT * 0.9
    with pytest.raises(queue.Full):
        descriptor.put_nowait("b")
    with pytest.raises(queue.Full):
        descriptor.put("b", block=False)

    assert descriptor.get(timeout=WAIT) == "a"
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        descriptor.get(timeout=WAIT)
    assert time.monotonic() - started >= WAIT * 0.9
    with pytest.raises(queue.Empty):
        descriptor.get_nowait()
    with pytest.raises(queue.Empty):
        descriptor.get(block=False)


def test_blocked_put_resumes_when_a_consumer_makes_room(make_queue):
    descriptor = make_queue(maxsize=1)
    descriptor.put("first")
    producer = threading.Thread(target=descriptor.put, args=("second",), kwargs={"timeout": 5})
    producer.start()
    wait_until_parked(descriptor.queue_instance.not_full)
    assert descriptor.get(timeout=1) == "first"
    producer.join(timeout=5)
    assert not producer.is_alive()
    assert descriptor.get(timeout=1) == "second"


# ---------------------------------------------------------------------- batches
def test_put_many_and_get_many_keep_order(make_queue):
    descriptor = make_queue()
    descriptor.put_many(list(range(10)))
    descriptor.put_many([])
    assert descriptor.get_many(4) == [0, 1, 2, 3]
    assert descriptor.get_many(100, timeout=0) == [4, 5, 6, 7, 8, 9]


def test_get_many_returns_what_is_there_and_raises_empty_at_the_timeout(make_queue):
    descriptor = make_queue()
    descriptor.put("only")
    assert descriptor.get_many(10, timeout=5) == ["only"]  # never waits for more once it has one
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        descriptor.get_many(10, timeout=WAIT)
    assert time.monotonic() - started >= WAIT * 0.9
    with pytest.raises(ValueError, match="max_items"):
        descriptor.get_many(0)


def test_put_many_on_a_partly_full_queue_reports_how_many_were_accepted(make_queue):
    descriptor = make_queue(maxsize=3)
    descriptor.put("old")
    with pytest.raises(BatchFull) as caught:
        descriptor.put_many(["a", "b", "c", "d"], timeout=WAIT)
    assert caught.value.accepted == 2
    assert isinstance(caught.value, queue.Full)
    assert drain(descriptor) == ["old", "a", "b"]
    with pytest.raises(BatchFull) as caught:
        descriptor.put_many(["x"] * 5, timeout=0)
    assert caught.value.accepted == 3


def test_batch_larger_than_maxsize_passes_with_a_concurrent_consumer(make_queue):
    descriptor = make_queue(maxsize=4)
    received: list[int] = []

    def consume() -> None:
        while len(received) < 1000:
            received.extend(descriptor.get_many(3, timeout=5))

    consumer = threading.Thread(target=consume)
    consumer.start()
    descriptor.put_many(list(range(1000)), timeout=10)
    consumer.join(timeout=10)
    assert received == list(range(1000))
    assert descriptor.empty()


def test_a_batch_wakes_every_blocked_consumer_it_has_items_for(make_queue):
    # Two consumers blocked in get(); one batch of two must wake both at once,
    # as two single puts would (not leave the second asleep beside its item).
    descriptor = make_queue()
    got: list[int] = []
    consumers = [threading.Thread(target=lambda: got.append(descriptor.get(timeout=10))) for _ in range(2)]
    for t in consumers:
        t.start()
    wait_until_parked(descriptor.queue_instance.not_empty, count=2)
    descriptor.put_many([1, 2])
    for t in consumers:
        t.join(timeout=2)
    assert not any(t.is_alive() for t in consumers)
    assert sorted(got) == [1, 2]


# ---------------------------------------------------------------------- serialization
@pytest.mark.parametrize("touch_first", [False, True])
def test_round_trips_reach_the_same_queue(make_queue, touch_first):
    original = make_queue(maxsize=7)
    original.metadata["owner"] = "map_0"
    if touch_first:
        original.put("before")
    via_dict = resolve_descriptor(original.to_dict())
    via_json = resolve_descriptor(json.loads(original.to_json()))
    for rebuilt in (via_dict, via_json):
        assert type(rebuilt) is PythonQueueDescriptor
        assert rebuilt == original
        assert not rebuilt.is_initialized()
        assert (rebuilt.queue_id, rebuilt.maxsize, rebuilt.metadata) == (original.queue_id, 7, {"owner": "map_0"})
    via_dict.put("from dict")
    via_json.put("from json")
    expected = ["before"] if touch_first else []
    assert drain(original) == [*expected, "from dict", "from json"]
    assert via_dict.queue_instance is original.queue_instance is via_json.queue_instance


def test_to_dict_is_plain_json_data(make_queue):
    descriptor = make_queue(maxsize=2)
    descriptor.put(object())  # an unserializable item must not matter: the queue is not in the dict
    data = descriptor.to_dict()
    assert data == {"queue_type": "python", "queue_id": descriptor.queue_id, "maxsize": 2, "metadata": {}}
    assert json.loads(descriptor.to_json()) == data


def test_pickling_drops_the_live_queue_and_reattaches_in_process(make_queue):
    descriptor = make_queue(maxsize=2)
    descriptor.put(threading.Lock())  # a queued item that cannot be pickled
    restored = pickle.loads(pickle.dumps(descriptor))
    assert descriptor.is_initialized()
    assert not restored.is_initialized()
    assert restored == descriptor
    assert isinstance(restored.get(timeout=1), type(threading.Lock()))
    restored.put("back")  # the restored descriptor has a working lock of its own
    assert descriptor.get(timeout=1) == "back"


def test_to_serializable_descriptor_keeps_identity_without_the_queue(make_queue):
    descriptor = make_queue(maxsize=4)
    descriptor.put("x")
    portable = descriptor.to_serializable_descriptor()
    assert portable == descriptor and portable is not descriptor
    assert not portable.is_initialized()
    assert portable.get(timeout=1) == "x"


def test_clone_is_lazy_same_config_and_new_id_unless_given(make_queue):
    descriptor = make_queue(maxsize=9)
    descriptor.metadata["role"] = "input"
    descriptor.put("stays with the original")
    clone = descriptor.clone()
    assert type(clone) is PythonQueueDescriptor
    assert clone.queue_id != descriptor.queue_id
    assert (clone.maxsize, clone.metadata) == (9, {"role": "input"})
    assert not clone.is_initialized()
    clone.metadata["role"] = "changed"
    assert descriptor.metadata == {"role": "input"}  # metadata is copied, not shared
    try:
        assert clone.empty()  # a new id is a new queue
    finally:
        clone.close()
    named = descriptor.clone("explicit-clone-id")
    assert named.queue_id == "explicit-clone-id" and not named.is_initialized()
    named.close()
    same = descriptor.clone(descriptor.queue_id)
    assert same == descriptor and same.get(timeout=1) == "stays with the original"


# ---------------------------------------------------------------------- cache and close
def test_clear_cache_and_trim_forget_the_reference_but_keep_the_items(make_queue):
    descriptor = make_queue()
    descriptor.put_many([1, 2])
    descriptor.clear_cache()
    assert not descriptor.is_initialized()
    assert descriptor.get(timeout=1) == 1
    assert descriptor.trim() is descriptor
    assert not descriptor.is_initialized()
    assert descriptor.get(timeout=1) == 2


def test_close_forgets_the_queue_and_a_later_access_starts_empty(make_queue):
    descriptor = make_queue()
    holder = PythonQueueDescriptor(queue_id=descriptor.queue_id)
    descriptor.put_many(["a", "b"])
    old_queue = holder.queue_instance
    descriptor.close()
    assert not descriptor.is_initialized()
    assert holder.get(timeout=1) == "a"  # a descriptor holding the queue still reaches its items
    assert descriptor.empty()  # the id now names a new, empty queue
    assert descriptor.queue_instance is not old_queue


# ---------------------------------------------------------------------- identity
def test_equality_and_hash_follow_identity(make_queue):
    a = make_queue(maxsize=2, queue_id="identity-a")
    same = PythonQueueDescriptor(maxsize=2, queue_id="identity-a", metadata={"note": "metadata is not identity"})
    other_id = make_queue(maxsize=2, queue_id="identity-b")
    other_size = PythonQueueDescriptor(maxsize=3, queue_id="identity-a")
    assert a == same and hash(a) == hash(same)
    assert a != other_id and a != other_size
    assert len({a, same, other_id, other_size}) == 3
    assert a != "identity-a"
    a.put(1)
    assert a == same  # first access does not change identity


def test_repr_names_class_id_size_and_state(make_queue):
    descriptor = make_queue(maxsize=5, queue_id="repr-q")
    assert repr(descriptor) == "PythonQueueDescriptor(queue_id='repr-q', maxsize=5, lazy)"
    descriptor.put(1)
    assert repr(descriptor) == "PythonQueueDescriptor(queue_id='repr-q', maxsize=5, attached)"
