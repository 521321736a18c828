"""Packet and StopSignal: fields, key helpers, copies, cheap pickling."""

from __future__ import annotations

import pickle

import pytest

from sage.kernel.runtime.communication import Packet, StopSignal


def test_packet_defaults_and_timestamp():
    packet = Packet({"v": 1})
    fields = (packet.payload, packet.input_index, packet.partition_key, packet.partition_strategy)
    assert fields == ({"v": 1}, 0, None, None)
    assert packet.timestamp > 0
    assert Packet(1, timestamp=12.5).timestamp == 12.5


@pytest.mark.parametrize("key", [0, "", False, None, "k", (1, 2)])
def test_hash_strategy_means_keyed_whatever_the_key(key):
    assert Packet(1, partition_key=key, partition_strategy="hash").is_keyed()


@pytest.mark.parametrize("strategy", [None, "round_robin", "broadcast"])
def test_other_strategies_are_not_keyed(strategy):
    assert not Packet(1, partition_key="k", partition_strategy=strategy).is_keyed()


def test_inherit_partition_info_keeps_routing_and_swaps_payload():
    parent = Packet("in", input_index=2, partition_key="user-1", partition_strategy="hash")
    child = parent.inherit_partition_info("out")
    assert child is not parent
    fields = (child.payload, child.input_index, child.partition_key, child.partition_strategy)
    assert fields == ("out", 2, "user-1", "hash")
    assert parent.payload == "in"


def test_update_key_changes_in_place_and_keeps_strategy_unless_given():
    packet = Packet(1, partition_key="a", partition_strategy="hash")
    assert packet.update_key("b") is packet
    assert (packet.partition_key, packet.partition_strategy) == ("b", "hash")
    packet.update_key(0, "broadcast")
    assert (packet.partition_key, packet.partition_strategy) == (0, "broadcast")


def test_copy_is_shallow_and_keeps_the_timestamp():
    payload = {"shared": True}
    packet = Packet(payload, input_index=1, partition_key="k", partition_strategy="hash", timestamp=3.0)
    copy = packet.copy()
    assert copy is not packet and copy == packet
    assert copy.payload is payload and copy.timestamp == 3.0
    copy.update_key("other")
    assert packet.partition_key == "k"


def test_equality_ignores_the_timestamp_and_packets_are_unhashable():
    assert Packet(1, timestamp=1.0) == Packet(1, timestamp=2.0)
    assert Packet(1) != Packet(2) and Packet(1) != Packet(1, input_index=1)
    assert Packet(1) != 1
    with pytest.raises(TypeError):
        hash(Packet(1))


def test_packet_pickles_every_field_without_an_instance_dict():
    packet = Packet(("payload", 1), input_index=3, partition_key=("k", 2), partition_strategy="hash", timestamp=9.25)
    restored = pickle.loads(pickle.dumps(packet))
    assert restored == packet and restored.timestamp == 9.25
    assert not hasattr(packet, "__dict__")
    # A constructor call with positional fields: no field names in the bytes.
    assert b"partition_strategy" not in pickle.dumps(packet)


def test_packet_repr_shows_payload_input_and_key():
    assert repr(Packet("x", input_index=1)) == "Packet('x', input=1)"
    assert repr(Packet("x", partition_key=0, partition_strategy="hash")) == "Packet('x', input=0, key=0/hash)"


def test_stop_signal_fields_pickling_and_repr():
    signal = StopSignal(source="map_1", payload={"count": 3})
    assert (signal.message, signal.source, signal.payload) == ("Stop", "map_1", {"count": 3})
    assert signal.timestamp > 0
    restored = pickle.loads(pickle.dumps(signal))
    assert (restored.message, restored.source, restored.payload, restored.timestamp) == (
        "Stop", "map_1", {"count": 3}, signal.timestamp,
    )
    assert not hasattr(signal, "__dict__")
    assert repr(StopSignal("Done", source="src_0")) == "StopSignal('Done', source='src_0')"
