"""Routing records from one task to its downstream task instances."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import SendCancelled, TransportError
from ..queue_descriptor import BatchFull
from .connection import DATA, FEEDBACK, Connection
from .packet import UNKEYED, Batch, FeedbackBatch, Packet, StopSignal
from .partition_key import check_key
from .record_copy import copy_records
from .selector import ChannelSelector, make_selector

DEFAULT_BATCH_SIZE = 256
"""Records coalesced per connection before a batch is put."""

DEFAULT_BUFFER_TIMEOUT = 0.005
"""Seconds a record may wait in a batch while the task keeps sending."""

RETRY_INTERVAL = 0.1
"""Seconds between cancel checks while a put waits for room downstream."""

_KEYED_STRATEGIES = ("hash", "mixed")


class _Channel:
    """One connection and the records waiting to go out on it (column-wise)."""

    __slots__ = ("connection", "payloads", "keys", "sends_keys", "batch_size", "batch_class")

    def __init__(self, connection: Connection, sends_keys: bool, batch_size: int) -> None:
        self.connection = connection
        self.payloads: list[Any] = []
        self.keys: list[Any] | None = None
        self.sends_keys = sends_keys
        # A batch never outweighs its target queue: a bounded queue then never holds more than its maxsize.
        maxsize = connection.queue_descriptor.maxsize
        self.batch_size = min(batch_size, maxsize) if maxsize > 0 else batch_size
        self.batch_class = FeedbackBatch if connection.edge == FEEDBACK else Batch

    def append(self, payloads: list[Any], keys: list[Any] | None) -> int:
        """Add a run of records; return how many are now pending here."""
        pending = self.payloads
        if self.sends_keys and (keys is not None or self.keys is not None):
            if self.keys is None:
                self.keys = [UNKEYED] * len(pending)
            self.keys.extend(keys if keys is not None else [UNKEYED] * len(payloads))
        pending.extend(payloads)
        return len(pending)

    def take(self, source: str | None) -> Batch:
        """The oldest pending records, at most `batch_size`, as one batch (handed over: its lists
        are never touched again; this channel keeps the rest in new lists)."""
        payloads, keys, size = self.payloads, self.keys, self.batch_size
        if len(payloads) <= size:
            self.payloads, self.keys = [], None
        else:
            self.payloads, payloads = payloads[size:], payloads[:size]
            if keys is not None:
                self.keys, keys = keys[size:], keys[:size]
        return self.batch_class(payloads, keys, self.connection.target_input_index, source)

    def restore(self, batch: Batch) -> None:
        """Put back a batch that could not be delivered (a cancelled send), ahead of newer records."""
        keys = batch.keys
        if self.keys is not None or keys is not None:
            keys = (keys or [UNKEYED] * len(batch.payloads)) + (self.keys or [UNKEYED] * len(self.payloads))
        self.payloads = batch.payloads + self.payloads
        self.keys = keys


class _Group:
    """One downstream transformation: its selector and one channel per instance."""

    __slots__ = ("index", "strategy", "selector", "channels")

    def __init__(self, index: int, strategy: str, connections: list[Connection], batch_size: int) -> None:
        self.index = index
        self.strategy = strategy
        self.selector: ChannelSelector = make_selector(strategy, len(connections))
        sends_keys = strategy in _KEYED_STRATEGIES
        self.channels = [_Channel(c, sends_keys, batch_size) for c in connections]


class BaseRouter:
    """Sends records to downstream groups, each routed by the selector of its edge.

    `downstream_groups` is `{broadcast_index: {parallel_index: Connection}}`,
    one group per downstream transformation; `strategies` gives each group's
    routing strategy as the execution graph decided it ("round_robin" when
    absent): "round_robin" spreads records over the group's instances,
    "hash" sends every record of a key to one instance (records without a key
    go round-robin), "mixed" is hash for an edge carrying keyed and unkeyed
    records, "broadcast" sends every record to every instance. Keys travel
    only on hash and mixed edges: downstream of any other edge a record has no
    key.

    Every record reaches each group once (all of the group's instances for
    broadcast). When that makes several deliveries of one record, each extra
    delivery gets its own copy of a mutable record (`copy_on_fanout`, see
    `record_copy`), made before any of them is handed over. A batch handed to
    a queue is never touched again.

    Records are coalesced per connection and put as one `Batch`, flushed on
    size, on `buffer_timeout`, on `flush()` and before any control item (the
    rules: docs/runtime_communication.md, "Batching"). Callers that may go
    idle call `flush()` first (the task loop does).

    Loops: records put on `LOOP` and `FEEDBACK` connections are counted in
    `loop_sent` (what a loop's termination detection needs), those on
    `FEEDBACK` connections also in `fed_back`; stop signals do not travel on
    them (a loop ends as a whole, see docs/runtime_tasks.md).

    A full downstream queue blocks the sender (backpressure), retrying until
    room appears; nothing is dropped. The only way out of a blocked put is
    `cancel_event` being set, which raises `SendCancelled`; a queue that fails
    otherwise raises `TransportError`.

    One router belongs to one sending thread; it is not thread-safe.
    """

    def __init__(
        self,
        downstream_groups: Mapping[int, Mapping[int, Connection]],
        strategies: Mapping[int, str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        buffer_timeout: float = DEFAULT_BUFFER_TIMEOUT,
        cancel_event: threading.Event | None = None,
        source: str | None = None,
        copy_on_fanout: bool = True,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not buffer_timeout >= 0 or buffer_timeout == float("inf"):  # also refuses NaN
            raise ValueError(f"buffer_timeout must be a finite number >= 0, got {buffer_timeout!r}")
        strategies = strategies or {}
        self._groups: list[_Group] = []
        for b_index in sorted(downstream_groups):
            by_parallel = downstream_groups[b_index]
            connections = [by_parallel[p] for p in sorted(by_parallel)]
            if connections:
                self._groups.append(_Group(b_index, strategies.get(b_index, "round_robin"), connections, batch_size))
        self._channels = [channel for group in self._groups for channel in group.channels]
        self.batch_size = batch_size
        self.buffer_timeout = buffer_timeout
        self.cancel_event = cancel_event or threading.Event()
        self.source = source
        deliveries = sum(len(g.channels) if g.selector.broadcasts else 1 for g in self._groups)
        self._fans_out = copy_on_fanout and deliveries > 1
        # Each record's first delivery keeps the original: all of the first group's when it
        # partitions (each record goes to one of its channels), else its first channel's.
        first = self._groups[0] if self._groups else None
        self._originals = 1 if first is not None and first.selector.broadcasts else None
        self._pending_since = 0.0
        self._has_pending = False
        # (seconds blocked in finished waits, start of the wait in progress or 0.0): one tuple,
        # replaced whole, so a metrics reader on another thread never sees half an update.
        self._blocked = (0.0, 0.0)
        self._only = self._channels[0] if len(self._channels) == 1 else None
        self._stop_channels = [channel for channel in self._channels if channel.connection.edge == DATA]
        self.loop_sent = 0
        """Records put on loop and feedback connections (read by the task's own thread)."""
        self.fed_back = 0
        """Records put on feedback connections (metrics read it from other threads)."""
        self._loop_closed = False

    # ------------------------------------------------------------------ sending
    def send(self, packet: Packet) -> int:
        """Route one packet's record; return the number of deliveries.

        The record is keyed when `packet.is_keyed()` (its `partition_key` is
        then used on hash edges). May block on a full downstream queue (see
        class docs). Raises `TypeError` for a key the stable hash does not
        support.
        """
        if packet.is_keyed():
            check_key(packet.partition_key)
            return self.send_batch([packet.payload], [packet.partition_key])
        return self.send_batch([packet.payload], None)

    def send_batch(self, payloads: list[Any], keys: list[Any] | None = None) -> int:
        """Route a run of records (`keys[i]` the key of `payloads[i]`, or no keys); return deliveries.

        The router does not keep the lists it is given. Keys are not checked
        here (the operator that makes them checks each one, see `check_key`).
        May block on a full downstream queue.
        """
        if not payloads:
            return 0
        only = self._only
        if only is not None:
            if only.append(payloads, keys) >= only.batch_size:
                self._put_full_batches(only)
            else:
                self._note_pending()
            return len(payloads)
        count = 0
        for channels, (channel_index, run, run_keys) in self._split(payloads, keys):
            channel = channels[channel_index]
            count += len(run)
            if channel.append(run, run_keys) >= channel.batch_size:
                self._put_full_batches(channel)
        self._note_pending()
        return count

    def _split(self, payloads: list[Any], keys: list[Any] | None) -> list[tuple[list[_Channel], Any]]:
        """Every delivery as (the group's channels, (channel index, records, keys)), copies made.

        All copies exist before the caller hands anything over: a consumer
        changing its record can never change another delivery's.
        """
        out = []
        originals = self._originals
        for group in self._groups:
            for split in group.selector.split(payloads, keys):
                out.append((group.channels, split))
        if self._fans_out:
            keep = originals if originals is not None else self._first_group_deliveries(out)
            for position in range(keep, len(out)):
                channels, (channel_index, run, run_keys) = out[position]
                out[position] = (channels, (channel_index, copy_records(run), run_keys))
        return out

    def _first_group_deliveries(self, out: list[tuple[list[_Channel], Any]]) -> int:
        first = self._groups[0].channels
        count = 0
        while count < len(out) and out[count][0] is first:
            count += 1
        return count

    def _note_pending(self) -> None:
        now = time.monotonic()
        if not self._has_pending:
            self._has_pending = True
            self._pending_since = now
        elif now - self._pending_since >= self.buffer_timeout:
            self.flush()

    def flush(self) -> None:
        """Put every pending batch downstream now (blocking while queues are full)."""
        for channel in self._channels:
            while channel.payloads:
                self._put_batch(channel)
        self._has_pending = False

    def has_pending(self) -> bool:
        """True when records wait in a batch (also those a cancelled send left behind)."""
        return any(channel.payloads for channel in self._channels)

    def close_loop_edges(self) -> None:
        """The loop has ended: from now on a batch for a loop or feedback connection raises `RuntimeError`
        instead of being put (its targets have ended, or are ending: nobody would take it)."""
        self._loop_closed = True

    def has_loop_pending(self) -> bool:
        """True when records wait in a batch for a loop or feedback connection."""
        return any(channel.payloads for channel in self._channels if channel.connection.edge != DATA)

    def send_stop_signal(self, signal: StopSignal) -> int:
        """Flush, then put `signal` once on every connection but loop ones; return how many.

        Blocking puts: the signal waits for room on a full queue and is never
        dropped (only `cancel_event` interrupts it). Then waits until every
        queue has what was put (a transport that sends in the background,
        the RPC queue, confirms it; the others have it already): a stream
        that fails after its last put raises `TransportError` here, while the
        task can still fail, instead of leaving its consumer waiting for the
        signal.
        """
        self.flush()
        for channel in self._stop_channels:
            self._put(channel.connection, signal)
        for descriptor in {id(c.connection.queue_descriptor): c.connection.queue_descriptor
                           for c in self._stop_channels}.values():
            try:
                descriptor.flush()
            except Exception as exc:
                raise TransportError(f"queue {descriptor.queue_id}: what was put before the stop signal, or the "
                                     f"signal itself, may not have arrived: {exc!r}") from exc
        return len(self._stop_channels)

    def send_control(self, item: Any) -> int:
        """Flush, then put the control item `item` (a stop signal, a barrier) once on every
        connection, in order behind the data; return how many. Blocks like any put."""
        self.flush()
        for channel in self._channels:
            self._put(channel.connection, item)
        return len(self._channels)

    def _put_full_batches(self, channel: _Channel) -> None:
        while len(channel.payloads) >= channel.batch_size:
            self._put_batch(channel)

    def _put_batch(self, channel: _Channel) -> None:
        if self._loop_closed and channel.connection.edge != DATA:
            raise RuntimeError(f"records sent to {channel.connection.target_name} after the loop ended")
        batch = channel.take(self.source)
        try:
            self._put(channel.connection, batch)
        except (SendCancelled, TransportError):
            channel.restore(batch)  # not delivered: it stays pending, ahead of newer records
            raise
        edge = channel.connection.edge
        if edge != DATA:
            self.loop_sent += len(batch.payloads)
            if edge == FEEDBACK:
                self.fed_back += len(batch.payloads)

    def _put(self, connection: Connection, item: Any) -> None:
        """Put one item on `connection`, blocking while its queue is full (re-checking for cancel)."""
        descriptor = connection.queue_descriptor
        items = [item]
        try:
            descriptor.put_many(items, timeout=0)
            return
        except (BatchFull, queue.Full):
            pass
        except Exception as exc:
            raise TransportError(f"queue {descriptor.queue_id} of {connection.target_name} failed: {exc!r}") from exc
        started = time.monotonic()
        self._blocked = (self._blocked[0], started)
        try:
            while True:
                if self.cancel_event.is_set():
                    raise SendCancelled(f"send to {connection.target_name} cancelled")
                try:
                    descriptor.put_many(items, timeout=RETRY_INTERVAL)
                    return
                except (BatchFull, queue.Full):
                    pass
                except Exception as exc:
                    raise TransportError(
                        f"queue {descriptor.queue_id} of {connection.target_name} failed: {exc!r}") from exc
        finally:
            self._blocked = (self._blocked[0] + time.monotonic() - started, 0.0)

    @property
    def backpressure_seconds(self) -> float:
        """Total time spent waiting for room downstream, a wait in progress included.

        Safe to read from another thread (metrics sample it while the task runs).
        """
        return self.backpressure_seconds_at(time.monotonic())

    def backpressure_seconds_at(self, now: float) -> float:
        """`backpressure_seconds` as of `now` (a `time.monotonic()` reading), for consistent metrics."""
        total, since = self._blocked
        return total + (max(0.0, now - since) if since else 0.0)

    # ------------------------------------------------------------------ introspection
    @property
    def connections(self) -> list[Connection]:
        """Every connection, group by group."""
        return [channel.connection for channel in self._channels]

    @property
    def strategies(self) -> dict[int, str]:
        """Each group's routing strategy, by broadcast index."""
        return {group.index: group.strategy for group in self._groups}

    def get_connections_info(self) -> dict[int, dict[str, Any]]:
        """Per broadcast group: strategy, connections, target names, parallel indices, queue ids,
        round-robin position, and per connection the records pending here and how full its
        queue is (`Connection.get_buffer_load()`: a round trip each for a remote queue)."""
        info = {}
        for group in self._groups:
            connections = [channel.connection for channel in group.channels]
            info[group.index] = {
                "strategy": group.strategy,
                "connections": [c.describe() for c in connections],
                "target_names": [c.target_name for c in connections],
                "parallel_indices": [c.parallel_index for c in connections],
                "queue_ids": [c.queue_descriptor.queue_id for c in connections],
                "round_robin_position": getattr(group.selector, "position", None),
                "pending": [len(channel.payloads) for channel in group.channels],
                "buffer_loads": [c.get_buffer_load() for c in connections],
            }
        return info

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.index}:{g.strategy}:{[c.connection.target_name for c in g.channels]}"
                           for g in self._groups)
        return f"BaseRouter({groups})"
