"""A queue hosted by an RPC queue server: the remote gets parked on it and the credit of its producers.

Local threads of the hosting process use a `HostedQueue` directly, as the
`BatchQueue` it is. Remote consumers and producers go through the server's
I/O thread, which never blocks on a queue:

- a remote get that finds the queue empty is *parked* here and answered when
  items come or its wait ends;
- a remote producer sends only within the *credit* it was granted: records of
  free capacity the queue reserves for it. What arrives within credit goes in
  at once, whatever local threads did meanwhile. A producer that wants more
  credit than is free waits in `starved` until a get frees room.

A change made by a local thread wakes the I/O thread only while remote gets
or producers wait, so the local hot path costs one attribute read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..queue_descriptor.python_queue_descriptor import BatchQueue
from .protocol import credits, records

UNBOUNDED_CREDIT = 2**62
"""Credit an unbounded queue (maxsize 0) offers: more than any producer asks for."""


@dataclass(slots=True, eq=False)
class ParkedGet:
    """A remote get waiting for items. `client` is the server's record of who asked."""

    queue: HostedQueue
    client: Any
    max_items: int
    timer: Any = None
    done: bool = False


@dataclass(slots=True, eq=False)
class Stream:
    """The server's record of one producer stream into one queue.

    Positions number the stream's items from 1; `next_position` is the first
    one not queued yet, so anything below it is a duplicate. `arrived` and
    `limit` count records from the stream's start: the producer may send
    while what it sent stays within `limit`, and `limit - arrived` is the
    credit the queue still reserves for it. `epoch` counts how often the
    producer gave credit back; a demand (`wanted`) from an older epoch is
    stale.
    """

    stream_id: bytes
    queue: HostedQueue
    identity: bytes
    next_position: int
    arrived: int
    limit: int
    epoch: int
    seq: int = 0  # the newest message handled
    credit_seq: int = 0  # the newest CREDIT message handled: it set `identity`
    wanted: int = 0
    lease: float = 0.0
    last_heard: float = 0.0
    starved: bool = False
    recalled: bool = False
    recall_timer: Any = None
    error: str = ""
    gets_too: bool = False  # a request from the producer's process named it: its process also gets

    @property
    def unused(self) -> int:
        """Credit granted and not used yet (records the queue keeps free for this stream)."""
        return max(0, self.limit - self.arrived)


class HostedQueue(BatchQueue):
    """A bounded FIFO shared by local threads and remote clients of one server.

    `wake` is called after a local thread changed the queue while remote gets
    or producers wait on it; it must be cheap and thread-safe. The methods in
    the "I/O thread only" section are the server's, which needs no wake-up.

    Capacity: `reserved` records are promised to remote producers (credit
    granted, not used yet); the server grants credit only while queued records
    plus `reserved` stay within `maxsize`. Local puts are checked against the
    queued records only, as in any `BatchQueue`, so credit granted before a
    local thread filled the queue can still arrive on top of it.

    Race-free wake: the I/O thread sets `has_waiters` before it retries a
    waiter, and a local thread reads it after its change, so either the retry
    sees the change or the local thread sees the flag.
    """

    def __init__(self, maxsize: int, wake: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._wake = wake
        self.parked_gets: deque[ParkedGet] = deque()
        self.starved: deque[Stream] = deque()
        self.producers: dict[bytes, Stream] = {}
        self.reserved = 0
        self.has_waiters = False

    # ------------------------------------------------------------------ local threads
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        try:
            super().put(item, block, timeout)
        finally:
            self._changed()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)
        finally:
            self._changed()

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        try:
            super().put_many(items, timeout)
        finally:
            self._changed()

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        try:
            return super().get_many(max_items, timeout)
        finally:
            self._changed()

    def _changed(self) -> None:
        if self.has_waiters:
            self._wake()

    # ------------------------------------------------------------------ I/O thread only
    def take(self, max_items: int) -> list[Any]:
        """Up to `max_items` items, oldest first, without waiting ([] when empty)."""
        with self.mutex:
            return self._take(max_items)  # wakes local producers too

    def restore(self, items: list[Any]) -> None:
        """Put `items` back at the front, in their order (a consumer never confirmed them).

        They were queued before, so they go back whatever the capacity.
        """
        with self.mutex:
            self.queue.extendleft(reversed(items))
            self.weight += records(items)  # still counted in unfinished_tasks: taking them did not end them
            self.not_empty.notify(len(items))

    def arrive(self, stream: Stream, items: list[Any]) -> None:
        """Queue `items` a producer sent within its credit (never blocks: the room was reserved, or
        the items are `overflow` items, which need none)."""
        with self.mutex:
            self.queue.extend(items)
            self.weight += records(items)
            self.unfinished_tasks += len(items)
            self.not_empty.notify(len(items))
        self.count_arrived(stream, stream.arrived + credits(items))

    def count_arrived(self, stream: Stream, arrived: int) -> None:
        """Set how many records of `stream` have arrived, releasing their reservation."""
        before = stream.unused
        stream.arrived = arrived
        self.reserved += stream.unused - before

    def set_limit(self, stream: Stream, limit: int) -> None:
        """Set the credit limit of `stream` (a grant raises it; giving credit back lowers it)."""
        before = stream.unused
        stream.limit = limit
        self.reserved += stream.unused - before

    def free_credit(self) -> int:
        """Records the queue can still promise: maxsize minus queued and reserved records."""
        if self.maxsize <= 0:
            return UNBOUNDED_CREDIT
        return self.maxsize - self.weight - self.reserved

    def park(self, get: ParkedGet) -> None:
        """Queue a remote get behind the others (FIFO per queue)."""
        self.parked_gets.append(get)
        self.has_waiters = True

    def unpark(self, get: ParkedGet) -> None:
        """Remove a get that is still parked (its wait ended, or its client moved on)."""
        self.parked_gets.remove(get)
        self._update_waiters()

    def starve(self, stream: Stream) -> None:
        """Queue `stream` for credit behind the others waiting for it."""
        if not stream.starved:
            stream.starved = True
            self.starved.append(stream)
            self.has_waiters = True

    def forget(self, stream: Stream) -> None:
        """Drop `stream`: its reservation ends and it no longer waits for credit."""
        self.set_limit(stream, stream.arrived)
        if stream.starved:
            stream.starved = False
            self.starved.remove(stream)
            self._update_waiters()
        self.producers.pop(stream.stream_id, None)

    def serve_waiters(self, answer: Callable[[ParkedGet, list[Any]], None], granted: Callable[[Stream], None]) -> None:
        """Answer parked gets while items last, then grant credit to starved streams while room lasts.

        `answer(get, items)` is called for each get that took items;
        `granted(stream)` for each stream whose limit rose. Gets go first:
        what they take is room that can be granted.
        """
        gets = self.parked_gets
        while gets:
            items = self.take(gets[0].max_items)
            if not items:
                break
            answer(gets.popleft(), items)
        starved = self.starved
        while starved:
            stream = starved[0]
            want = stream.wanted - stream.limit
            if want > 0:
                free = self.free_credit()
                if free <= 0:
                    break
                self.set_limit(stream, stream.limit + min(free, want))
                granted(stream)
                if want > free:
                    break
            starved.popleft()
            stream.starved = False
        self._update_waiters()

    def _update_waiters(self) -> None:
        self.has_waiters = bool(self.parked_gets or self.starved)
