"""Routing packets from one task to its downstream task instances."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Mapping

from ..errors import SendCancelled, TransportError
from ..queue_descriptor import BatchFull
from .connection import Connection
from .packet import Packet, StopSignal
from .partition_key import stable_hash

DEFAULT_BATCH_SIZE = 256
"""Packets coalesced per connection before a batch put."""

DEFAULT_BUFFER_TIMEOUT = 0.005
"""Seconds a packet may wait in a batch while the task keeps sending."""

RETRY_INTERVAL = 0.1
"""Seconds between cancel checks while a put waits for room downstream."""

STRATEGIES = ("round_robin", "hash", "broadcast")


class _Group:
    """One downstream transformation: its instances, their pending batches, the round-robin position."""

    __slots__ = ("index", "connections", "size", "input_indices", "pending", "rr_position")

    def __init__(self, index: int, connections: list[Connection]) -> None:
        self.index = index
        self.connections = connections
        self.size = len(connections)
        self.input_indices = [c.target_input_index for c in connections]
        self.pending: list[list[Any]] = [[] for _ in connections]
        self.rr_position = 0


class BaseRouter:
    """Sends packets to downstream groups with round-robin, hash or broadcast routing.

    `downstream_groups` is `{broadcast_index: {parallel_index: Connection}}`,
    one group per downstream transformation. Every `send` delivers one copy
    per group: to one instance chosen round-robin (strategy None or
    "round_robin"), by the stable hash of `partition_key` ("hash"), or to
    every instance ("broadcast"). Each copy carries its target's input index.

    Packets are coalesced per connection and put with `put_many`; a batch goes
    out when it holds `batch_size` packets, when a send finds the oldest
    pending packet older than `buffer_timeout`, on `flush()`, and before any
    stop signal. Callers that may go idle call `flush()` first (the task loop
    does), so a packet never waits on a quiet router.

    A full downstream queue blocks the sender (backpressure), retrying until
    room appears; nothing is dropped. The only way out of a blocked put is
    `cancel_event` being set, which raises `SendCancelled`.

    One router belongs to one sending thread; it is not thread-safe.
    """

    def __init__(
        self,
        downstream_groups: Mapping[int, Mapping[int, Connection]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        buffer_timeout: float = DEFAULT_BUFFER_TIMEOUT,
        cancel_event: threading.Event | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if buffer_timeout < 0:
            raise ValueError(f"buffer_timeout must be >= 0, got {buffer_timeout!r}")
        self._groups: list[_Group] = []
        for b_index in sorted(downstream_groups):
            by_parallel = downstream_groups[b_index]
            connections = [by_parallel[p] for p in sorted(by_parallel)]
            if connections:
                self._groups.append(_Group(b_index, connections))
        self.batch_size = batch_size
        self.buffer_timeout = buffer_timeout
        self.cancel_event = cancel_event or threading.Event()
        self._pending_count = 0
        self._pending_since = 0.0
        # (seconds blocked in finished waits, start of the wait in progress or 0.0): one tuple,
        # replaced whole, so a metrics reader on another thread never sees half an update.
        self._blocked = (0.0, 0.0)
        if len(self._groups) == 1 and self._groups[0].size == 1:
            # One downstream instance (parallelism 1 to 1): every strategy picks it.
            self._only = self._groups[0]
            self.send = self._send_to_only  # type: ignore[method-assign]

    # ------------------------------------------------------------------ sending
    def send(self, packet: Packet) -> int:
        """Route `packet` to every group; return the number of deliveries.

        May block on a full downstream queue (see class docs). Raises
        `ValueError` for an unknown strategy and `TypeError` for a key type the
        stable hash does not support.
        """
        strategy = packet.partition_strategy
        deliveries = 0
        key_hash = -1
        batch_size = self.batch_size
        for group in self._groups:
            if strategy is None or strategy == "round_robin":
                position = group.rr_position
                group.rr_position = 0 if position + 1 == group.size else position + 1
                targets: Any = (position,)
            elif strategy == "hash":
                if key_hash < 0:
                    key_hash = stable_hash(packet.partition_key)
                targets = (key_hash % group.size,)
            elif strategy == "broadcast":
                targets = range(group.size)
            else:
                raise ValueError(f"unknown partition strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
            for position in targets:
                input_index = group.input_indices[position]
                pending = group.pending[position]
                # Only the first delivery may be the packet itself: every other copy is
                # its own object, so a receiver updating its packet in place
                # (update_key) cannot change what another receiver sees.
                pending.append(packet if deliveries == 0 and packet.input_index == input_index else Packet(
                    packet.payload, input_index, packet.partition_key, strategy, packet.timestamp))
                deliveries += 1
                if len(pending) >= batch_size:
                    # Counted out before the put: _put_batch empties the list.
                    self._pending_count -= len(pending)
                    self._put_batch(group.connections[position], pending)
        if deliveries:
            now = time.monotonic()
            if self._pending_count <= 0:
                self._pending_since = now
            self._pending_count += deliveries
            if self._pending_count and now - self._pending_since >= self.buffer_timeout:
                self.flush()
        return deliveries

    def _send_to_only(self, packet: Packet) -> int:
        """`send` for a router with a single connection: same checks and batching, less routing."""
        strategy = packet.partition_strategy
        if strategy is not None and strategy != "round_robin" and strategy != "broadcast":
            if strategy != "hash":
                raise ValueError(f"unknown partition strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
            stable_hash(packet.partition_key)  # unsupported key types fail here as with more instances
        group = self._only
        input_index = group.input_indices[0]
        pending = group.pending[0]
        pending.append(packet if packet.input_index == input_index else Packet(
            packet.payload, input_index, packet.partition_key, strategy, packet.timestamp))
        if len(pending) >= self.batch_size:
            self._pending_count = 0
            self._put_batch(group.connections[0], pending)
            return 1
        now = time.monotonic()
        if self._pending_count <= 0:
            self._pending_since = now
        self._pending_count += 1
        if now - self._pending_since >= self.buffer_timeout:
            self.flush()
        return 1

    def flush(self) -> None:
        """Put every pending batch downstream now (blocking while queues are full)."""
        for group in self._groups:
            for connection, pending in zip(group.connections, group.pending):
                if pending:
                    self._put_batch(connection, pending)
        self._pending_count = 0

    def has_pending(self) -> bool:
        """True when packets wait in a batch (also those a cancelled send left behind)."""
        return any(pending for group in self._groups for pending in group.pending)

    def send_stop_signal(self, signal: StopSignal) -> int:
        """Flush, then put `signal` once on every connection; return how many.

        Blocking puts: the signal waits for room on a full queue and is never
        dropped (only `cancel_event` interrupts it).
        """
        self.flush()
        count = 0
        for group in self._groups:
            for connection in group.connections:
                self._put_batch(connection, [signal])
                count += 1
        return count

    def _put_batch(self, connection: Connection, items: list[Any]) -> None:
        """Put all `items` on `connection`, emptying the list as they are accepted.

        Accepted items leave `items` at once, so after `SendCancelled` the list
        holds exactly what was not delivered and a later flush never sends an
        item twice.
        """
        descriptor = connection.queue_descriptor
        try:
            descriptor.put_many(items, timeout=0)
            items.clear()
            return
        except BatchFull as full:
            del items[: full.accepted]
        except queue.Full:
            pass
        except Exception as exc:
            raise TransportError(f"queue {descriptor.queue_id} of {connection.target_name} failed: {exc!r}") from exc
        started = time.monotonic()
        self._blocked = (self._blocked[0], started)
        try:
            while items:
                if self.cancel_event.is_set():
                    raise SendCancelled(f"send to {connection.target_name} cancelled")
                try:
                    descriptor.put_many(items, timeout=RETRY_INTERVAL)
                    items.clear()
                except BatchFull as full:
                    del items[: full.accepted]
                except queue.Full:
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
        total, since = self._blocked
        return total + (time.monotonic() - since if since else 0.0)

    # ------------------------------------------------------------------ introspection
    @property
    def connections(self) -> list[Connection]:
        """Every connection, group by group."""
        return [c for group in self._groups for c in group.connections]

    def get_connections_info(self) -> dict[int, dict[str, Any]]:
        """Per broadcast group: connections, target names, parallel indices, queue ids, round-robin position."""
        return {
            group.index: {
                "connections": [c.describe() for c in group.connections],
                "target_names": [c.target_name for c in group.connections],
                "parallel_indices": [c.parallel_index for c in group.connections],
                "queue_ids": [c.queue_descriptor.queue_id for c in group.connections],
                "round_robin_position": group.rr_position,
                "pending": [len(p) for p in group.pending],
            }
            for group in self._groups
        }

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.index}:{[c.target_name for c in g.connections]}" for g in self._groups)
        return f"BaseRouter({groups})"
