"""BaseQueueDescriptor's own machinery, through a minimal transport over a plain queue.Queue.

Transports that do not override `put_many`/`get_many` (and the lazy creation
every transport inherits) rely on what these tests pin down.
"""

from __future__ import annotations

import queue
import threading

import pytest

from sage.kernel.runtime.communication import BaseQueueDescriptor, BatchFull

from .support import first_access_from_threads


class PlainQueueDescriptor(BaseQueueDescriptor):
    """A real, unregistered transport: a private queue.Queue per descriptor, counting creations."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.created = 0

    def _create_queue_instance(self) -> queue.Queue:
        self.created += 1
        return queue.Queue(self.maxsize)


def test_racing_first_accesses_create_the_queue_once():
    for _ in range(20):
        descriptor = PlainQueueDescriptor()
        seen = first_access_from_threads(descriptor)
        assert descriptor.created == 1
        assert all(q is seen[0] for q in seen)


def test_default_put_many_reports_accepted_items_at_the_timeout():
    descriptor = PlainQueueDescriptor(maxsize=3)
    descriptor.put("old")
    with pytest.raises(BatchFull) as caught:
        descriptor.put_many(["a", "b", "c"], timeout=0.02)
    assert caught.value.accepted == 2
    assert descriptor.get_many(10, timeout=0) == ["old", "a", "b"]


def test_default_get_many_blocks_for_one_and_never_waits_for_more():
    descriptor = PlainQueueDescriptor()
    with pytest.raises(queue.Empty):
        descriptor.get_many(5, timeout=0.02)
    descriptor.put_many([1, 2, 3])
    assert descriptor.get_many(2) == [1, 2]
    assert descriptor.get_many(5) == [3]
    with pytest.raises(ValueError, match="max_items"):
        descriptor.get_many(0)


def test_default_put_many_crosses_a_small_bound_with_a_consumer():
    descriptor = PlainQueueDescriptor(maxsize=2)
    received: list[int] = []
    consumer = threading.Thread(target=lambda: received.extend(descriptor.get(timeout=5) for _ in range(50)))
    consumer.start()
    descriptor.put_many(list(range(50)), timeout=5)
    consumer.join(timeout=5)
    assert received == list(range(50))


def test_clone_and_from_dict_keep_the_subclass_and_stay_lazy():
    descriptor = PlainQueueDescriptor(maxsize=4, metadata={"k": "v"})
    descriptor.put(1)
    clone = descriptor.clone()
    assert type(clone) is PlainQueueDescriptor
    assert (clone.maxsize, clone.metadata, clone.created) == (4, {"k": "v"}, 0)
    assert clone.queue_id != descriptor.queue_id


def test_close_drops_the_cached_instance():
    descriptor = PlainQueueDescriptor()
    descriptor.put(1)
    descriptor.close()
    assert not descriptor.is_initialized()
    assert descriptor.empty()  # this transport's queue lives in the descriptor: a new access starts empty
    assert descriptor.created == 2
