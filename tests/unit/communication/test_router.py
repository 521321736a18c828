"""BaseRouter: strategies, input indices, batching and flush rules, errors, introspection; Connection."""

from __future__ import annotations

import pickle
import time
from collections import Counter, defaultdict

import pytest

from sage.kernel.runtime.communication import BaseRouter, Connection, Packet, StopSignal, stable_hash

from .support import drain

NO_TIMEOUT = 3600.0  # a buffer_timeout that never passes during a test


def queues_of(groups):
    return {(b, p): c.queue_descriptor for b, group in groups.items() for p, c in group.items()}


def router_after(groups, packets: int, **settings) -> BaseRouter:
    """A router over `groups` (never flushing on time) that has sent payloads 0..packets-1."""
    router = BaseRouter(groups, **{"buffer_timeout": NO_TIMEOUT, **settings})
    for i in range(packets):
        router.send(Packet(i))
    return router


# ---------------------------------------------------------------------- strategies
@pytest.mark.parametrize("strategy", [None, "round_robin"])
def test_round_robin_spreads_evenly_and_in_turn(make_groups, strategy):
    groups = make_groups({0: 3, 1: 2})
    router = BaseRouter(groups, batch_size=1)
    for i in range(12):
        assert router.send(Packet(i, partition_strategy=strategy)) == 2
    queues = queues_of(groups)
    for p in range(3):
        assert [pk.payload for pk in drain(queues[0, p])] == list(range(p, 12, 3))
    for p in range(2):
        assert [pk.payload for pk in drain(queues[1, p])] == list(range(p, 12, 2))


def test_broadcast_reaches_every_instance_of_every_group_as_separate_copies(make_groups):
    groups = make_groups({0: 3, 1: 2}, input_indices={1: 1})
    router = BaseRouter(groups, batch_size=1)
    packet = Packet({"v": 1}, partition_strategy="broadcast")
    assert router.send(packet) == 5
    received = {place: drain(q) for place, q in queues_of(groups).items()}
    copies = [items[0] for items in received.values()]
    assert all(len(items) == 1 for items in received.values())
    assert all(c.payload is packet.payload and c.partition_strategy == "broadcast" for c in copies)
    assert len({id(c) for c in copies}) == 5  # an in-place change on one receiver cannot reach another
    assert [received[0, p][0].input_index for p in range(3)] == [0, 0, 0]
    assert [received[1, p][0].input_index for p in range(2)] == [1, 1]


def test_hash_keeps_every_key_on_one_instance(make_groups):
    groups = make_groups({0: 4, 1: 3})
    router = BaseRouter(groups)
    keys = [f"user-{i}" for i in range(100)]
    for round_ in range(5):
        for key in keys:
            router.send(Packet((key, round_), partition_key=key, partition_strategy="hash"))
    router.flush()
    for (b, p), q in queues_of(groups).items():
        size = len(groups[b])
        placed = drain(q)
        assert placed, f"instance {b}/{p} got no key"
        for packet in placed:
            assert stable_hash(packet.partition_key) % size == p
        # All five packets of a key are here, in the order they were sent.
        by_key = defaultdict(list)
        for packet in placed:
            by_key[packet.payload[0]].append(packet.payload[1])
        assert all(rounds == [0, 1, 2, 3, 4] for rounds in by_key.values())


@pytest.mark.parametrize("key", [0, "", False, None])
def test_falsy_keys_are_keys_not_a_fallback_to_round_robin(make_groups, key):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, batch_size=1)
    for i in range(9):
        router.send(Packet(i, partition_key=key, partition_strategy="hash"))
    counts = {p: q.qsize() for (_, p), q in queues_of(groups).items()}
    assert counts[stable_hash(key) % 3] == 9
    assert sum(counts.values()) == 9


def test_each_copy_carries_its_targets_input_index(make_groups):
    groups = make_groups({0: 2, 1: 2}, input_indices={0: 0, 1: 1})
    router = BaseRouter(groups, batch_size=1)
    original = Packet("x", input_index=0)
    router.send(original)
    router.send(Packet("y", input_index=1, partition_key="k", partition_strategy="hash"))
    queues = queues_of(groups)
    first = drain(queues[0, 0]) + drain(queues[0, 1])
    second = drain(queues[1, 0]) + drain(queues[1, 1])
    assert {(pk.payload, pk.input_index) for pk in first} == {("x", 0), ("y", 0)}
    assert {(pk.payload, pk.input_index) for pk in second} == {("x", 1), ("y", 1)}
    assert original.input_index == 0  # the sender's packet is not changed
    keyed = [pk for pk in first + second if pk.payload == "y"]
    assert all((pk.partition_key, pk.partition_strategy) == ("k", "hash") for pk in keyed)


def test_a_router_without_groups_delivers_nothing():
    router = BaseRouter({0: {}})
    assert router.send(Packet(1)) == 0
    assert router.send_stop_signal(StopSignal()) == 0
    assert router.connections == [] and not router.has_pending()


# ---------------------------------------------------------------------- errors
def test_unknown_strategy_raises_at_the_first_send_and_delivers_nothing(make_groups):
    groups = make_groups({0: 2, 1: 2})
    router = BaseRouter(groups, batch_size=1)
    with pytest.raises(ValueError, match="unknown partition strategy 'shuffle'; expected one of round_robin, hash, broadcast"):
        router.send(Packet(1, partition_strategy="shuffle"))
    assert all(q.empty() for q in queues_of(groups).values())
    assert not router.has_pending()


def test_unsupported_key_type_raises_type_error_and_delivers_nothing(make_groups):
    groups = make_groups({0: 2})
    router = BaseRouter(groups, batch_size=1)
    with pytest.raises(TypeError, match="unsupported partition key type 'list'"):
        router.send(Packet(1, partition_key=["not", "hashable"], partition_strategy="hash"))
    assert all(q.empty() for q in queues_of(groups).values())


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size"), ({"buffer_timeout": -1}, "buffer_timeout")])
def test_bad_router_settings_are_named(make_groups, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaseRouter(make_groups({0: 1}), **kwargs)


# ---------------------------------------------------------------------- batching and flush rules
def test_batch_goes_out_when_it_fills(make_groups):
    groups = make_groups({0: 1})
    q = groups[0][0].queue_descriptor
    router = router_after(groups, 3, batch_size=4)
    assert q.empty() and router.has_pending()
    router.send(Packet(3))
    assert [pk.payload for pk in drain(q)] == [0, 1, 2, 3]
    assert not router.has_pending()


def test_flush_pushes_partial_batches_on_every_connection(make_groups):
    groups = make_groups({0: 2, 1: 1})
    router = router_after(groups, 3, batch_size=100)
    assert all(q.empty() for q in queues_of(groups).values())
    assert router.get_connections_info()[0]["pending"] == [2, 1]
    router.flush()
    queues = queues_of(groups)
    assert [pk.payload for pk in drain(queues[0, 0])] == [0, 2]
    assert [pk.payload for pk in drain(queues[0, 1])] == [1]
    assert [pk.payload for pk in drain(queues[1, 0])] == [0, 1, 2]
    assert not router.has_pending()


def test_a_stop_signal_flushes_first_and_arrives_once_per_connection(make_groups):
    groups = make_groups({0: 2, 1: 1})
    router = router_after(groups, 4, batch_size=100)
    signal = StopSignal(source="src_0")
    assert router.send_stop_signal(signal) == 3
    for q in queues_of(groups).values():
        items = drain(q)
        assert items[-1] is signal
        assert all(isinstance(item, Packet) for item in items[:-1])
    assert not router.has_pending()


def test_buffer_timeout_flushes_at_the_next_send(make_groups):
    groups = make_groups({0: 1})
    q = groups[0][0].queue_descriptor
    timeout = 0.02
    router = BaseRouter(groups, batch_size=10**9, buffer_timeout=timeout)
    started = time.monotonic()
    sent = 0
    # Keep sending (the situation buffer_timeout is for) until a flush happens.
    while q.empty():
        router.send(Packet(sent))
        sent += 1
        assert time.monotonic() - started < 5, "buffer_timeout never flushed"
    assert time.monotonic() - started >= timeout
    assert [pk.payload for pk in drain(q)] == list(range(sent))  # everything pending went, in order
    assert not router.has_pending()


def test_zero_buffer_timeout_sends_every_packet_at_once(make_groups):
    groups = make_groups({0: 1})
    router = BaseRouter(groups, buffer_timeout=0)
    router.send(Packet("now"))
    assert groups[0][0].queue_descriptor.qsize() == 1


# ---------------------------------------------------------------------- introspection
def test_get_connections_info_describes_every_group(make_groups):
    groups = make_groups({0: 2, 3: 1}, input_indices={3: 1})
    router = BaseRouter(groups, batch_size=1)
    router.send(Packet(1))
    info = router.get_connections_info()
    assert sorted(info) == [0, 3]
    assert info[0]["target_names"] == ["g0_0", "g0_1"]
    assert info[0]["parallel_indices"] == [0, 1]
    assert info[0]["queue_ids"] == [c.queue_descriptor.queue_id for c in groups[0].values()]
    assert info[0]["round_robin_position"] == 1
    assert info[3]["round_robin_position"] == 0
    assert info[3]["connections"] == [
        {
            "broadcast_index": 3,
            "parallel_index": 0,
            "target_name": "g3_0",
            "target_input_index": 1,
            "queue_id": groups[3][0].queue_descriptor.queue_id,
            "queue_type": "python",
        }
    ]
    assert [c.target_name for c in router.connections] == ["g0_0", "g0_1", "g3_0"]
    assert repr(router) == "BaseRouter(0:['g0_0', 'g0_1'], 3:['g3_0'])"


def test_groups_and_instances_are_ordered_by_index_not_insertion(make_queue):
    def conn(b, p):
        return Connection(b, p, f"t{b}_{p}", make_queue())

    router = BaseRouter({2: {1: conn(2, 1), 0: conn(2, 0)}, 1: {0: conn(1, 0)}})
    assert [c.target_name for c in router.connections] == ["t1_0", "t2_0", "t2_1"]


# ---------------------------------------------------------------------- Connection
def test_buffer_load_is_qsize_over_maxsize(make_queue):
    bounded = Connection(0, 0, "t", make_queue(maxsize=4))
    assert bounded.get_buffer_load() == 0.0
    bounded.queue_descriptor.put_many([1, 2, 3])
    assert bounded.get_buffer_load() == 0.75
    bounded.queue_descriptor.put(4)
    assert bounded.get_buffer_load() == 1.0
    unbounded = Connection(0, 0, "t", make_queue())
    unbounded.queue_descriptor.put_many(list(range(100)))
    assert unbounded.get_buffer_load() == 0.0


def test_connection_pickles_with_a_lazy_descriptor(make_queue):
    descriptor = make_queue(maxsize=2)
    descriptor.put("queued")
    connection = Connection(1, 2, "join_2", descriptor, target_input_index=1)
    restored = pickle.loads(pickle.dumps(connection))
    assert (restored.broadcast_index, restored.parallel_index, restored.target_name, restored.target_input_index) == (1, 2, "join_2", 1)
    assert restored.queue_descriptor == descriptor and not restored.queue_descriptor.is_initialized()
    assert restored.queue_descriptor.get(timeout=1) == "queued"
    assert repr(restored) == f"Connection('join_2', group=1, index=2, input=1, queue={descriptor.queue_id!r})"


def test_round_robin_positions_are_per_group(make_groups):
    groups = make_groups({0: 2, 1: 3})
    router_after(groups, 7, batch_size=1)
    counts = Counter({place: q.qsize() for place, q in queues_of(groups).items()})
    assert counts == Counter({(0, 0): 4, (0, 1): 3, (1, 0): 3, (1, 1): 2, (1, 2): 2})
