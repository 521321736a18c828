"""What travels through queues: batches of records, single packets and end-of-stream signals.

Between tasks, records travel in `Batch`es: the router coalesces the records
it sends on one channel (one upstream instance to one downstream instance)
and hands them over as one queue item, stored column-wise (payloads, keys).
A `Packet` is one record: what user code and the seed's API send
(`TaskContext.send_packet`), and what a foreign producer may put on a queue.
Control items (`StopSignal`, `CheckpointBarrier`) travel in the same queues, in
order behind the data. Records fed back around a loop travel as `FeedbackBatch`es.

Once a batch is handed to a queue it belongs to its consumer: the sender
never touches it or its lists again (rule 8 of the architecture).
"""

from __future__ import annotations

import time
from typing import Any

from ..queue_descriptor.base_queue_descriptor import WeightedItem


class _Unkeyed:
    """The key of a record that has none, in a batch whose other records have keys."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "UNKEYED"  # pickles as a reference to the module's one instance

    def __repr__(self) -> str:
        return "UNKEYED"


UNKEYED = _Unkeyed()
"""Marks a record without a key inside a keyed batch (e.g. a flatmap's `close()` output merged
into a keyed stream). Hash routing sends such records round-robin."""


class Batch(WeightedItem):
    """Records of one channel, in order: `payloads[i]` with key `keys[i]` (`keys` is None
    when no record has one).

    `input_index` says which input of the downstream operator the records
    belong to; `source` names the upstream instance that sent them (the
    channel), as a `StopSignal`'s does. A bounded queue counts a batch as
    `weight == len(payloads)` records. Never empty.
    """

    __slots__ = ("payloads", "keys", "input_index", "source")

    def __init__(self, payloads: list[Any], keys: list[Any] | None = None, input_index: int = 0,
                 source: str | None = None) -> None:
        self.payloads = payloads
        self.keys = keys
        self.input_index = input_index
        self.source = source

    @property
    def weight(self) -> int:
        return len(self.payloads)

    def __len__(self) -> int:
        return len(self.payloads)

    def packets(self) -> list[Packet]:
        """The records as `Packet`s (for inspection; the runtime works on the columns)."""
        keys = self.keys
        if keys is None:
            return [Packet(payload, self.input_index) for payload in self.payloads]
        return [Packet(payload, self.input_index) if key is UNKEYED else
                Packet(payload, self.input_index, key, "hash")
                for payload, key in zip(self.payloads, keys, strict=True)]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Batch, (self.payloads, self.keys, self.input_index, self.source))

    def __repr__(self) -> str:
        keyed = ", keyed" if self.keys is not None else ""
        return f"Batch({len(self.payloads)} records, input={self.input_index}, source={self.source!r}{keyed})"


class FeedbackBatch(Batch):
    """A batch fed back around a loop (over a feedback edge, see `fill_future`): it never waits for
    room in its target queue (`overflow`), so the tasks of a loop can never all wait on each other."""

    __slots__ = ()

    overflow = True

    def __reduce__(self) -> tuple[Any, ...]:
        return (FeedbackBatch, (self.payloads, self.keys, self.input_index, self.source))


class Packet:
    """One record on its way to a downstream task.

    `input_index` tells a multi-input operator (comap, join) which of its
    inputs the record belongs to; the router sets it per target.
    `partition_key` is the record's key when `partition_strategy` is "hash"
    (a keyed record; falsy keys and None are keys too). Where a record goes
    is decided per edge by the execution graph (see `ChannelSelector`); on a
    hash edge a keyed record goes to the instance its key hashes to.
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

    def inherit_partition_info(self, new_payload: Any) -> Packet:
        """A new packet with `new_payload` that keeps this packet's key, strategy and input index."""
        return Packet(new_payload, self.input_index, self.partition_key, self.partition_strategy)

    def update_key(self, key: Any, strategy: str | None = None) -> Packet:
        """Set the partition key (and strategy, when given) in place; returns self."""
        self.partition_key = key
        if strategy is not None:
            self.partition_strategy = strategy
        return self

    def copy(self) -> Packet:
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

    __hash__ = None  # type: ignore[assignment]  # mutable: no hash

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


class CheckpointBarrier(WeightedItem):
    """Marks the cut of checkpoint `checkpoint_id` on one channel (`source` names the sender).

    Sources inject it between two records when a checkpoint is triggered;
    every task forwards it on all its connections once it has it from every
    input channel that has not ended (alignment), after taking its snapshot.
    Like a stop signal it travels in order behind the data. It never waits
    for room in a queue (`overflow`): it also travels feedback edges.
    """

    __slots__ = ("checkpoint_id", "source")

    overflow = True

    def __init__(self, checkpoint_id: int, source: str | None = None) -> None:
        self.checkpoint_id = checkpoint_id
        self.source = source

    @property
    def weight(self) -> int:
        return 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (CheckpointBarrier, (self.checkpoint_id, self.source))

    def __repr__(self) -> str:
        return f"CheckpointBarrier({self.checkpoint_id}, source={self.source!r})"
