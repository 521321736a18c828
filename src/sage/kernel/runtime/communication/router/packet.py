"""What travels through queues: data packets and end-of-stream signals."""

from __future__ import annotations

import time
from typing import Any


class Packet:
    """One record on its way to a downstream task.

    `input_index` tells a multi-input operator (comap, join) which of its
    inputs the record belongs to; the router sets it per target.
    `partition_key` and `partition_strategy` ("hash", "broadcast",
    "round_robin" or None for round-robin) tell the router where it goes.
    """

    __slots__ = ("payload", "input_index", "partition_key", "partition_strategy", "timestamp")

    def __init__(
        self,
        payload: Any,
        input_index: int = 0,
        partition_key: Any = None,
        partition_strategy: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        self.payload = payload
        self.input_index = input_index
        self.partition_key = partition_key
        self.partition_strategy = partition_strategy
        self.timestamp = time.time() if timestamp is None else timestamp

    def is_keyed(self) -> bool:
        """True when the packet is routed by the hash of its key (falsy keys included)."""
        return self.partition_strategy == "hash"

    def inherit_partition_info(self, new_payload: Any) -> "Packet":
        """A new packet with `new_payload` that keeps this packet's key, strategy and input index."""
        return Packet(new_payload, self.input_index, self.partition_key, self.partition_strategy)

    def update_key(self, key: Any, strategy: str | None = None) -> "Packet":
        """Set the partition key (and strategy, when given) in place; returns self."""
        self.partition_key = key
        if strategy is not None:
            self.partition_strategy = strategy
        return self

    def copy(self) -> "Packet":
        """A shallow copy (the payload object is shared), keeping the timestamp."""
        return Packet(self.payload, self.input_index, self.partition_key, self.partition_strategy, self.timestamp)

    def __reduce__(self) -> tuple[Any, ...]:
        # A plain constructor call pickles smaller and faster than slot state.
        return (Packet, (self.payload, self.input_index, self.partition_key, self.partition_strategy, self.timestamp))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (self.payload, self.input_index, self.partition_key, self.partition_strategy) == (
            other.payload,
            other.input_index,
            other.partition_key,
            other.partition_strategy,
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        key = f", key={self.partition_key!r}/{self.partition_strategy}" if self.partition_strategy else ""
        return f"Packet({self.payload!r}, input={self.input_index}{key})"


class StopSignal:
    """End of stream from one upstream task instance (`source` names it).

    It travels in order behind the data on the same queue; a task finishes
    once it has one from every upstream instance of every input. A source
    function may also return a `StopSignal` to end its stream.
    """

    __slots__ = ("message", "source", "payload", "timestamp")

    def __init__(self, message: str = "Stop", source: str | None = None, payload: Any = None,
                 timestamp: float | None = None) -> None:
        self.message = message
        self.source = source
        self.payload = payload
        self.timestamp = time.time() if timestamp is None else timestamp

    def __reduce__(self) -> tuple[Any, ...]:
        return (StopSignal, (self.message, self.source, self.payload, self.timestamp))

    def __repr__(self) -> str:
        return f"StopSignal({self.message!r}, source={self.source!r})"
