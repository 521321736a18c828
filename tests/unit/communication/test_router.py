"""BaseRouter: strategies from the graph, input indices, fan-out copies, batching and flush rules,
errors, introspection; Connection."""

from __future__ import annotations

import math
import pickle
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from sage.kernel.runtime.communication import (
    BaseRouter,
    Batch,
    Connection,
    Packet,
    PythonQueueDescriptor,
    StopSignal,
    stable_hash,
)
from sage.kernel.runtime.communication.router import UNKEYED

from .support import drain

NO_TIMEOUT = 3600.0  # a buffer_timeout that never passes during a test


def queues_of(groups):
    return {(b, p): c.queue_descriptor for b, group in groups.items() for p, c in group.items()}


def router_after(groups, packets: int, strategies=None, **settings) -> BaseRouter:
    """A router over `groups` (never flushing on time) that has sent payloads 0..packets-1."""
    router = BaseRouter(groups, strategies, **{"buffer_timeout": NO_TIMEOUT, **settings})
    for i in range(packets):
        router.send(Packet(i))
    return router


# ---------------------------------------------------------------------- strategies
@pytest.mark.parametrize("strategies", [None, {0: "round_robin", 1: "round_robin"}])
def test_round_robin_spreads_evenly_and_in_turn(make_groups, strategies):
    groups = make_groups({0: 3, 1: 2})
    router = BaseRouter(groups, strategies, batch_size=1)
    for i in range(12):
        assert router.send(Packet(i)) == 2
    queues = queues_of(groups)
    for p in range(3):
        assert [pk.payload for pk in drain(queues[0, p])] == list(range(p, 12, 3))
    for p in range(2):
        assert [pk.payload for pk in drain(queues[1, p])] == list(range(p, 12, 2))


def test_a_run_is_spread_like_records_sent_one_by_one(make_groups):
    one_by_one, as_runs = make_groups({0: 3}), make_groups({0: 3})
    single = BaseRouter(one_by_one, buffer_timeout=NO_TIMEOUT)
    runs = BaseRouter(as_runs, buffer_timeout=NO_TIMEOUT)
    for i in range(20):
        single.send(Packet(i))
    runs.send_batch([0, 1, 2, 3, 4])
    runs.send_batch([5, 6])
    runs.send_batch(list(range(7, 20)))
    single.flush()
    runs.flush()
    for p in range(3):
        assert [pk.payload for pk in drain(as_runs[0][p].queue_descriptor)] == \
            [pk.payload for pk in drain(one_by_one[0][p].queue_descriptor)] == list(range(p, 20, 3))


def test_broadcast_reaches_every_instance_of_every_group(make_groups):
    groups = make_groups({0: 3, 1: 2}, input_indices={1: 1})
    router = BaseRouter(groups, {0: "broadcast", 1: "broadcast"}, batch_size=1)
    assert router.send(Packet("x")) == 5
    received = {place: drain(q) for place, q in queues_of(groups).items()}
    assert all([pk.payload for pk in items] == ["x"] for items in received.values())
    assert [received[0, p][0].input_index for p in range(3)] == [0, 0, 0]
    assert [received[1, p][0].input_index for p in range(2)] == [1, 1]


def test_hash_keeps_every_key_on_one_instance_in_order(make_groups):
    groups = make_groups({0: 4, 1: 3})
    router = BaseRouter(groups, {0: "hash", 1: "hash"})
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
        by_key = defaultdict(list)
        for packet in placed:
            by_key[packet.payload[0]].append(packet.payload[1])
        assert all(rounds == [0, 1, 2, 3, 4] for rounds in by_key.values())


@pytest.mark.parametrize("key", [0, "", False, None])
def test_falsy_keys_are_keys_not_a_fallback_to_round_robin(make_groups, key):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, {0: "hash"}, batch_size=1)
    for i in range(9):
        router.send(Packet(i, partition_key=key, partition_strategy="hash"))
    counts = {p: q.qsize() for (_, p), q in queues_of(groups).items()}
    assert counts[stable_hash(key) % 3] == 9
    assert sum(counts.values()) == 9


def test_equal_keys_of_different_types_reach_one_instance(make_groups):
    """0.0 and -0.0, 1, 1.0 and True, and tuples of them are equal keys: they must not split (rule 9)."""
    groups = make_groups({0: 5})
    router = BaseRouter(groups, {0: "hash"}, buffer_timeout=NO_TIMEOUT)
    for i in range(1000):
        router.send_batch([("zero", i), ("one", i), ("tuple", i)],
                          [0.0 if i % 2 else -0.0, (1, 1.0, True)[i % 3], ("k", 1.0 if i % 2 else 1)])
    router.flush()
    instances: dict[str, set[int]] = defaultdict(set)
    counts: Counter[str] = Counter()
    for (_, p), q in queues_of(groups).items():
        for pk in drain(q):
            instances[pk.payload[0]].add(p)
            counts[pk.payload[0]] += 1
    assert all(len(found) == 1 for found in instances.values()), instances
    assert counts == {"zero": 1000, "one": 1000, "tuple": 1000}


def test_a_mixed_edge_hashes_keyed_records_and_spreads_the_others(make_groups):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, {0: "mixed"}, buffer_timeout=NO_TIMEOUT)
    router.send_batch(["a", "b", "c"], ["k", "k", "k"])
    router.send_batch([1, 2, 3])
    router.send_batch(["d", 4], ["k", UNKEYED])
    router.flush()
    received = {p: drain(q) for (_, p), q in queues_of(groups).items()}
    home = stable_hash("k") % 3
    assert [pk.payload for pk in received[home] if pk.is_keyed()] == ["a", "b", "c", "d"]
    unkeyed = sorted(pk.payload for items in received.values() for pk in items if not pk.is_keyed())
    assert unkeyed == [1, 2, 3, 4]
    assert {p for p, items in received.items() if any(not pk.is_keyed() for pk in items)} == {0, 1, 2}


def test_keys_travel_only_on_hash_edges(make_groups):
    groups = make_groups({0: 1, 1: 1})
    router = BaseRouter(groups, {0: "hash", 1: "round_robin"}, batch_size=1)
    router.send(Packet("x", partition_key="k", partition_strategy="hash"))
    (on_hash,), (on_round_robin,) = drain(groups[0][0].queue_descriptor), drain(groups[1][0].queue_descriptor)
    assert on_hash.is_keyed() and on_hash.partition_key == "k"
    assert not on_round_robin.is_keyed()


def test_each_delivery_carries_its_targets_input_index(make_groups):
    groups = make_groups({0: 2, 1: 2}, input_indices={0: 0, 1: 1})
    router = BaseRouter(groups, {0: "hash", 1: "hash"}, batch_size=1)
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


# ---------------------------------------------------------------------- fan-out (rule 8)
class RewritingQueue(PythonQueueDescriptor):
    """A queue whose consumer takes every batch the instant it is handed over and rewrites it
    in place: its list entries and the records in it (the worst interleaving a real consumer
    thread can produce, made deterministic)."""

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        super().put_many(items, timeout)
        for item in items:
            if isinstance(item, Batch):
                for i, payload in enumerate(item.payloads):
                    if isinstance(payload, dict):
                        payload["seen_by"] = self.queue_id
                    item.payloads[i] = ("rewritten", payload)


@pytest.mark.parametrize(("strategies", "sizes"), [
    ({0: "broadcast"}, {0: 3}),
    ({0: "broadcast", 1: "broadcast"}, {0: 2, 1: 2}),
    ({0: "round_robin", 1: "hash", 2: "round_robin"}, {0: 1, 1: 2, 2: 3}),
])
def test_every_delivery_is_its_own_whatever_another_consumer_does(make_queue, strategies, sizes):
    queues: dict[tuple[int, int], PythonQueueDescriptor] = {}
    groups = {}
    for b, size in sizes.items():
        groups[b] = {}
        for p in range(size):
            q = queues[b, p] = RewritingQueue(queue_id=f"rewrite-{b}-{p}-{id(queues)}")
            groups[b][p] = Connection(b, p, f"g{b}_{p}", q)
    try:
        router = BaseRouter(groups, strategies, batch_size=1)
        for i in range(30):
            router.send(Packet({"n": i}, partition_key=i, partition_strategy="hash"))
        for _place, q in queues.items():
            for pk in drain(q):
                kind, record = pk.payload
                assert kind == "rewritten"
                # Each consumer sees only its own change: no other consumer touched its record.
                assert record["seen_by"] == q.queue_id
    finally:
        for q in queues.values():
            q.close()


def test_fan_out_copies_mutable_records_and_shares_immutable_ones(make_groups):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, {0: "broadcast"}, batch_size=1)
    mutable, immutable = {"v": [1, 2]}, ("v", (1, 2), frozenset({3}))
    router.send_batch([mutable, immutable])
    router.flush()
    got = [drain(q) for q in queues_of(groups).values()]
    dicts = [items[0].payload for items in got]
    assert all(d == mutable for d in dicts)
    assert len({id(d) for d in dicts}) == 3 and len({id(d["v"]) for d in dicts}) == 3
    assert all(items[1].payload is immutable for items in got)


def test_copy_on_fanout_off_shares_records(make_groups):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, {0: "broadcast"}, batch_size=1, copy_on_fanout=False)
    record = {"v": 1}
    router.send_batch([record])
    assert all(drain(q)[0].payload is record for q in queues_of(groups).values())


def test_a_record_that_cannot_be_copied_is_named(make_groups):
    import threading

    groups = make_groups({0: 2})
    router = BaseRouter(groups, {0: "broadcast"}, batch_size=1)
    with pytest.raises(TypeError, match=r"lock.*copy_on_fanout=False"):
        router.send_batch([threading.Lock()])
    assert all(q.empty() for q in queues_of(groups).values())


def test_a_single_delivery_is_never_copied(make_groups):
    groups = make_groups({0: 3})
    router = BaseRouter(groups, {0: "hash"}, batch_size=1)
    records = [{"n": i} for i in range(6)]
    router.send_batch(records, list(range(6)))
    received = [pk.payload for q in queues_of(groups).values() for pk in drain(q)]
    assert sorted(map(id, received)) == sorted(map(id, records))


# ---------------------------------------------------------------------- errors
def test_unknown_strategy_is_refused_when_the_router_is_built(make_groups):
    expected = "unknown routing strategy 'shuffle'; expected one of round_robin, hash, mixed, broadcast"
    with pytest.raises(ValueError, match=expected):
        BaseRouter(make_groups({0: 2}), {0: "shuffle"})


def test_unsupported_key_type_raises_type_error_and_delivers_nothing(make_groups):
    groups = make_groups({0: 2})
    router = BaseRouter(groups, {0: "hash"}, batch_size=1)
    with pytest.raises(TypeError, match="unsupported partition key type 'list'"):
        router.send(Packet(1, partition_key=["not", "hashable"], partition_strategy="hash"))
    assert all(q.empty() for q in queues_of(groups).values())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size"), ({"buffer_timeout": -1}, "buffer_timeout"),
    ({"buffer_timeout": math.nan}, "buffer_timeout"), ({"buffer_timeout": math.inf}, "buffer_timeout"),
])
def test_bad_router_settings_are_named(make_groups, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaseRouter(make_groups({0: 1}), **kwargs)


# ---------------------------------------------------------------------- batching and flush rules
def test_records_go_as_one_batch_when_it_fills(make_groups):
    groups = make_groups({0: 1})
    q = groups[0][0].queue_descriptor
    router = router_after(groups, 3, batch_size=4)
    assert q.empty() and router.has_pending()
    router.send(Packet(3))
    (batch,) = q.get_many(10, timeout=0)
    assert isinstance(batch, Batch) and batch.payloads == [0, 1, 2, 3] and batch.weight == 4
    assert not router.has_pending()


def test_a_batch_never_outweighs_its_target_queue(make_groups):
    groups = make_groups({0: 1}, maxsize=3)
    q = groups[0][0].queue_descriptor
    router = BaseRouter(groups, batch_size=256, buffer_timeout=NO_TIMEOUT)
    router.send_batch([0, 1, 2, 3, 4])  # a full batch is 3 records here, the queue's capacity
    assert [b.payloads for b in q.get_many(10, timeout=0)] == [[0, 1, 2]]
    assert router.get_connections_info()[0]["pending"] == [2]


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


def test_batches_name_their_channel(make_groups):
    groups = make_groups({0: 1})
    router = BaseRouter(groups, batch_size=1, source="map_3")
    router.send(Packet(1))
    (batch,) = groups[0][0].queue_descriptor.get_many(1, timeout=0)
    assert batch.source == "map_3"


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


def test_zero_buffer_timeout_sends_every_record_at_the_next_send(make_groups):
    groups = make_groups({0: 1})
    router = BaseRouter(groups, buffer_timeout=0)
    router.send(Packet("first"))
    router.send(Packet("now"))
    assert groups[0][0].queue_descriptor.qsize() == 2


# ---------------------------------------------------------------------- introspection
def test_get_connections_info_describes_every_group(make_groups):
    groups = make_groups({0: 2, 3: 1}, input_indices={3: 1})
    router = BaseRouter(groups, {3: "hash"}, batch_size=1)
    router.send(Packet(1))
    info = router.get_connections_info()
    assert sorted(info) == [0, 3]
    assert (info[0]["strategy"], info[3]["strategy"]) == ("round_robin", "hash")
    assert router.strategies == {0: "round_robin", 3: "hash"}
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
            "edge": "data",
        }
    ]
    assert [c.target_name for c in router.connections] == ["g0_0", "g0_1", "g3_0"]
    assert repr(router) == "BaseRouter(0:round_robin:['g0_0', 'g0_1'], 3:hash:['g3_0'])"


def test_groups_and_instances_are_ordered_by_index_not_insertion(make_queue):
    def conn(b, p):
        return Connection(b, p, f"t{b}_{p}", make_queue())

    router = BaseRouter({2: {1: conn(2, 1), 0: conn(2, 0)}, 1: {0: conn(1, 0)}})
    assert [c.target_name for c in router.connections] == ["t1_0", "t2_0", "t2_1"]


# ---------------------------------------------------------------------- Connection
def test_buffer_load_is_records_queued_over_maxsize(make_queue):
    bounded = Connection(0, 0, "t", make_queue(maxsize=8))
    assert bounded.get_buffer_load() == 0.0
    bounded.queue_descriptor.put_many([1, 2, 3])
    assert bounded.get_buffer_load() == 0.375
    bounded.queue_descriptor.put(Batch([4, 5, 6, 7, 8]))  # a batch counts its records
    assert bounded.get_buffer_load() == 1.0
    unbounded = Connection(0, 0, "t", make_queue())
    unbounded.queue_descriptor.put_many(list(range(100)))
    assert unbounded.get_buffer_load() == 0.0


def test_connection_pickles_with_a_lazy_descriptor(make_queue):
    descriptor = make_queue(maxsize=2)
    descriptor.put("queued")
    connection = Connection(1, 2, "join_2", descriptor, target_input_index=1)
    restored = pickle.loads(pickle.dumps(connection))
    fields = (restored.broadcast_index, restored.parallel_index, restored.target_name, restored.target_input_index)
    assert fields == (1, 2, "join_2", 1)
    assert restored.queue_descriptor == descriptor and not restored.queue_descriptor.is_initialized()
    assert restored.queue_descriptor.get(timeout=1) == "queued"
    assert repr(restored) == f"Connection('join_2', group=1, index=2, input=1, queue={descriptor.queue_id!r})"


def test_round_robin_positions_are_per_group(make_groups):
    groups = make_groups({0: 2, 1: 3})
    router_after(groups, 7, batch_size=1)
    counts = Counter({place: len(drain(q)) for place, q in queues_of(groups).items()})
    assert counts == Counter({(0, 0): 4, (0, 1): 3, (1, 0): 3, (1, 1): 2, (1, 2): 2})
