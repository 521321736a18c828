"""The producer side of the RPC queue: puts that flow within credit, without waiting for the server.

A put is accepted into this process's *stream* to the queue as soon as the
stream holds credit for it (records of room the server reserved for this
producer), and returns. Flow control is the credit: a producer whose queue
is full runs out of it and blocks; a put that finds no credit asks the server
for some and waits, or raises `queue.Full` / `BatchFull(accepted)` at its
timeout, having asked at least once.

What is accepted travels in DATA messages that carry consecutive positions.
The server queues them at once (the room is reserved) and acknowledges them
cumulatively, by position, in the message that also grants more credit. Who
sends them:

- a sender thread per stream, which coalesces whatever callers accepted
  while it was busy into one message, and handles acknowledgements, credit
  requests, re-sends and keep-alives;
- the caller itself, when nothing is unacknowledged and the sender thread is
  not packing a batch: the first put after a pause then leaves at once on
  the caller's own socket, without waking the sender thread. Until the
  server acknowledges it, the sender thread holds back newer items, so
  positions reach the server in order.

Delivery: `flush()` returns once the server has queued everything accepted
before it. Messages not acknowledged within `timeout / 6` are sent again
(go-back-N); the server queues each position once. No answer from the
server for `timeout` seconds while something is outstanding ends the
stream: the next call raises `ConnectionError`, and what was not
acknowledged may be lost. The stream then starts afresh, so a restarted
server is reached again.

Credit that the stream does not use goes back to the server when the server
asks for it (because other producers wait for credit) and the stream is idle.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import zmq

from ..queue_descriptor.base_queue_descriptor import BatchFull
from .auth import Signer
from .protocol import (
    FLAG_RECALL,
    MAX_MESSAGE_BYTES,
    Op,
    ProtocolError,
    Reply,
    Status,
    credit,
    credits,
    decode_reply,
    dumps_items,
    encode_request,
    request_header_size,
)

log = logging.getLogger(__name__)

MAX_ITEMS_PER_MESSAGE = 4096
"""Items coalesced into one DATA message (more go in the next one)."""

WAIT_CAP = 1.0
"""Seconds a waiting caller or the idle sender sleeps before it re-checks its state."""

_NOBLOCK = int(zmq.NOBLOCK)


class RPCQueueError(RuntimeError):
    """The server answered with an error (for example, it could not unpickle a batch)."""


@dataclass(slots=True)
class _Sent:
    """A DATA message not acknowledged yet: what a re-send needs."""

    first: int
    last: int
    weight: int  # records sent before `first`
    weight_after: int
    payload: bytes  # empty: positions the server skips (items that could not travel)


def credit_window(maxsize: int) -> int:
    """Records of credit a producer asks for beyond what it needs now (half the queue)."""
    return max(1, maxsize // 2) if maxsize > 0 else 1 << 20


class ProducerStream:
    """The stream of one process into one remote queue: credit, positions, a sender thread.

    Thread-safe: several threads may put; each thread's items keep their
    order. The sender thread starts on the first put. Errors found on the
    way (no answer, a server restart, an item that cannot travel) are raised
    by the next `put`, `put_many` or `flush`, once.

    `put` and `put_many` return the messages the caller should send on its
    own socket (see the module docs); they are empty when the sender thread
    sends. All state is guarded by one lock; sockets are used outside it.
    """

    def __init__(self, endpoint: str, queue_id: str, maxsize: int, signer: Signer, timeout: float) -> None:
        self.endpoint = endpoint
        self.queue_id = queue_id
        self.maxsize = maxsize
        self.timeout = timeout
        self._signer = signer
        self._window = credit_window(maxsize)
        self._resend_interval = timeout / 6
        # Silence after which the server counts as gone. The sender may notice a caller's
        # own message one re-send interval late, so the error still comes within `timeout`.
        self._silence_limit = timeout - self._resend_interval
        self._idle_cap = min(WAIT_CAP, self._resend_interval)
        self._max_payload = MAX_MESSAGE_BYTES - request_header_size(queue_id)
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._wake_w: socket.socket | None = None
        self._sender_idle = False
        self._pid = os.getpid()
        # Why the last stream ended, and whether a caller has been told.
        self._failure: BaseException | None = None
        self._unreported = False
        self._generation = 0
        # Records that blocked callers wait to put. It belongs to those callers, not to a stream:
        # each adds what it needs and takes it off when it stops waiting, whatever stream ended meanwhile.
        self._backlog = 0
        self._start_stream()

    def _start_stream(self) -> None:
        """Reset to a fresh stream (lock held, or before the sender starts)."""
        self._stream_id = os.urandom(16)
        self._seq = 0  # messages sent
        self._incarnation = 0  # the server instance that answered first
        self._epoch = 0
        self._base = 0
        self._limit = 0  # credit limit, in records from the stream's start
        self._position = 0  # last position accepted from callers
        self._weight = 0  # records accepted from callers
        self._outbox: list[Any] = []  # accepted, not sent yet
        self._sent_position = 0
        self._sent_weight = 0
        self._hold = 0  # the last position a caller sent itself: newer ones wait for its acknowledgement
        self._packing = False  # the sender thread is pickling a batch it took
        self._unacked: deque[_Sent] = deque()
        self._acked = 0  # last position the server queued
        self._acked_weight = 0
        self._demands = 0  # credit requests made by callers
        self._asked = 0  # the latest of them a message carried
        self._answered = 0  # the latest of them the server has answered
        self._asks: deque[tuple[int, int]] = deque()  # (message seq, demand it carried)
        self._recalled = False
        self._expecting = False  # something was outstanding after the sender's last round
        self._quiet_since = 0.0  # since then the server has not been heard
        self._progress_at = 0.0  # the last time an acknowledgement advanced (or a go-back-N re-send)
        self._last_sent = 0.0

    # ------------------------------------------------------------------ callers
    def put(self, item: Any, timeout: float | None) -> list[bytes]:
        """Accept one item into the stream; `BatchFull(0)` when no credit came within `timeout`.

        Returns the messages the caller sends itself (empty: the sender thread
        sends). Raises an error the stream met since the last call (see the
        class docs).
        """
        weight = credit(item)
        with self._cond:
            if self._unreported:
                self._report()
            available = self._limit - self._weight
            if (weight <= available or available >= self.maxsize > 0) and not self._backlog and self._thread:
                self._outbox.append(item)
                self._position += 1
                self._weight += weight
                return self._dispatch()
        return self.put_many([item], timeout)

    def put_many(self, items: list[Any], timeout: float | None) -> list[bytes]:
        """Accept `items` in order, waiting for credit; `BatchFull(accepted)` at the timeout.

        Even with `timeout` 0, a put that lacks credit asks the server once and
        waits for its answer (at most the stream's `timeout`, after which the
        stream ends with `ConnectionError`). Returns what `put` returns.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        count = len(items)
        with self._cond:
            if self._unreported:
                self._report()
            self._ensure_sender()
            generation = self._generation
            done = self._accept(items, 0)
            while done < count:
                need = credits(items[done:])
                self._backlog += need
                self._demands += 1
                demand = self._demands
                self._wake_locked()
                try:
                    granted = self._wait_for_credit(demand, deadline, generation)
                finally:
                    self._backlog -= need
                if not granted:
                    if done:
                        self._wake_locked()
                    raise BatchFull(done)
                done = self._accept(items, done)
            return self._dispatch()

    def flush(self, timeout: float | None) -> None:
        """Block until the server has queued every item accepted before this call.

        Raises `TimeoutError` after `timeout` seconds (None: no limit), and
        `ConnectionError`, `RPCQueueError` or `ValueError` when the stream
        ended or items could not travel (see the class docs).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._unreported:
                self._report()
            target, generation = self._position, self._generation
            while self._acked < target:
                if self._generation != generation:
                    self._report()
                self._check_sender()
                remaining = WAIT_CAP if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.endpoint} queue {self.queue_id!r}: {target - self._acked} item(s) "
                        f"not confirmed within {timeout}s"
                    )
                self._cond.wait(min(remaining, WAIT_CAP))
            if self._unreported:
                self._report()

    @property
    def stream_id(self) -> bytes:
        """The id of the current stream (a new one after the stream ended)."""
        return self._stream_id

    @property
    def pending(self) -> int:
        """Items accepted and not yet confirmed by the server."""
        return self._position - self._acked

    def close(self, timeout: float) -> None:
        """Flush (up to `timeout`), then stop the sender thread; raises what `flush` raises.

        The sender stops even when the flush fails; a later put starts it again
        (with the credit the stream still holds).
        """
        try:
            if self._thread is not None:
                self.flush(timeout)
        finally:
            with self._cond:
                thread, self._thread = self._thread, None
                stop, self._stop = self._stop, None
                if stop is not None:
                    stop.set()
                    self._wake_locked()
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    # ------------------------------------------------------------------ caller helpers (lock held)
    def _accept(self, items: list[Any], done: int) -> int:
        """Accept items from index `done` on while credit lasts; return the index of the first one left."""
        available = self._limit - self._weight
        maxsize = self.maxsize
        outbox = self._outbox
        start, count = done, len(items)
        while done < count:
            item = items[done]
            weight = credit(item)
            # An item goes in when it fits in the credit, or when the stream holds
            # the queue's whole capacity (an item heavier than maxsize goes in alone).
            if weight > available and not available >= maxsize > 0:
                break
            outbox.append(item)
            available -= weight
            done += 1
        self._position += done - start
        self._weight = self._limit - available
        return done

    def _dispatch(self) -> list[bytes]:
        """Hand what was just accepted on: to the caller when the stream is quiet, else to the sender thread."""
        if not self._outbox:
            return []
        if not self._incarnation:
            # A fresh stream: the server must know it before data comes (its first message asks for
            # credit). Only items that need no credit (`overflow`) get here so early: the sender
            # thread opens the stream with a credit request, then sends them.
            if self._answered >= self._demands:
                self._demands += 1
            self._wake_locked()
            return []
        if self._lapsed(time.monotonic()):
            self._wake_locked()  # the sender thread opens the stream again ahead of these items
            return []
        if self._unacked or self._packing:
            if self._sender_idle:
                self._wake_locked()
            return []
        # Quiet: nothing in flight, so nothing the caller sends now can overtake it. The
        # sender thread keeps newer items back until the server has these.
        items, first, weight = self._take_outbox()
        self._hold = self._position
        self._progress_at = time.monotonic()
        if not self._expecting:
            self._expecting, self._quiet_since = True, self._progress_at
        sents, problems = self._pack(items, first, weight)
        self._note_problems(problems)
        return self._register(sents)

    def _lapsed(self, now: float) -> bool:
        """True when nothing was sent on this stream for a lease and nothing waits for an acknowledgement (lock
        held). A server that keeps more streams than its `max_clients` may then forget it (it forgets only
        streams silent for two leases that hold no credit), and would refuse data on it: data sent now must
        follow a credit request, which opens the stream again where it was, or is a no-op."""
        return not self._unacked and now - self._last_sent > self.timeout

    def _take_outbox(self) -> tuple[list[Any], int, int]:
        items, self._outbox = self._outbox, []
        first, weight = self._sent_position + 1, self._sent_weight
        self._sent_position, self._sent_weight = self._position, self._weight
        return items, first, weight

    def _wait_for_credit(self, demand: int, deadline: float | None, generation: int) -> bool:
        """Wait until credit grows (True), or the deadline passed after the server answered `demand` (False)."""
        limit, epoch = self._limit, self._epoch
        while True:
            if self._generation != generation:
                self._report()
            if self._limit > limit or self._epoch != epoch:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline and self._answered >= demand:
                return False
            self._check_sender()
            wait = WAIT_CAP if deadline is None or now >= deadline else min(WAIT_CAP, deadline - now)
            self._cond.wait(wait)

    def _report(self) -> None:
        """Raise the failure callers have not been told about yet."""
        self._unreported = False
        raise self._failure  # type: ignore[misc]

    def _check_sender(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise RPCQueueError(f"the sender thread of {self.endpoint} queue {self.queue_id!r} is not running")

    def _ensure_sender(self) -> None:
        if self._thread is None:
            wake_r, self._wake_w = socket.socketpair()
            wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(wake_r, self._wake_w, self._stop), name=f"rpc-producer-{self.queue_id}",
                daemon=True,
            )
            self._sender_idle = False
            self._thread.start()
            _live_streams.add(self)

    def _wake_locked(self) -> None:
        self._sender_idle = False
        # BlockingIOError: a full buffer already holds a wake-up; OSError: the sender closed it.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")  # type: ignore[union-attr]

    def _fail(self, failure: BaseException) -> None:
        """End the stream (lock held): callers get `failure` once; a fresh stream starts."""
        self._failure = failure
        self._unreported = True
        self._generation += 1
        self._start_stream()
        self._cond.notify_all()

    def _note_problems(self, problems: list[str]) -> None:
        if problems:
            self._failure = ValueError(
                f"{self.endpoint} queue {self.queue_id!r}: {'; '.join(problems)}; dropped, later items still sent"
            )
            self._unreported = True

    # ------------------------------------------------------------------ messages
    def _pack(self, items: list[Any], first: int, weight: int) -> tuple[list[_Sent], list[str]]:
        """Pickle `items` (positions from `first`) into DATA payloads; no shared state is touched.

        Batches go in messages of at most `MAX_ITEMS_PER_MESSAGE` items under
        the size limit; a batch that is too big or will not pickle is halved
        until the item at fault is alone. Such an item is sent as an empty
        position (the server skips it, so later items still line up) and
        described in the returned problems.
        """
        sents: list[_Sent] = []
        problems: list[str] = []
        if len(items) <= MAX_ITEMS_PER_MESSAGE:
            self._pack_chunk(items, first, weight, sents, problems)
            return sents, problems
        for start in range(0, len(items), MAX_ITEMS_PER_MESSAGE):
            chunk = items[start : start + MAX_ITEMS_PER_MESSAGE]
            weight = self._pack_chunk(chunk, first + start, weight, sents, problems)
        return sents, problems

    def _pack_chunk(self, items: list[Any], first: int, weight: int, sents: list[_Sent], problems: list[str]) -> int:
        weight_after = weight + credits(items)
        try:
            payload = dumps_items(items)
            problem = None if len(payload) <= self._max_payload else (
                f"pickles to {len(payload)} bytes, over the {self._max_payload}-byte limit"
            )
        except Exception as exc:
            payload, problem = b"", f"cannot be pickled: {exc!r}"
        if problem is None:
            sents.append(_Sent(first, first + len(items) - 1, weight, weight_after, payload))
        elif len(items) > 1:
            half = len(items) // 2
            middle = self._pack_chunk(items[:half], first, weight, sents, problems)
            self._pack_chunk(items[half:], first + half, middle, sents, problems)
        else:
            problems.append(f"item {first} {problem}")
            sents.append(_Sent(first, first, weight, weight_after, b""))
        return weight_after

    def _register(self, sents: list[_Sent]) -> list[bytes]:
        """Note `sents` as unacknowledged and encode them (lock held)."""
        self._unacked.extend(sents)
        return [self._data_message(sent) for sent in sents]

    def _data_message(self, sent: _Sent) -> bytes:
        return self._message(
            Op.DATA, position=sent.first, weight=sent.weight, count=sent.last - sent.first + 1, payload=sent.payload
        )

    def _message(
        self, op: Op, *, position: int, weight: int, count: int = 0, payload: bytes = b"", wanted: int | None = None
    ) -> bytes:
        """One stream message with the stream's current demand (unless `wanted` is given) and epoch (lock held)."""
        self._seq += 1
        if self._demands > self._asked:
            self._asked = self._demands
            self._asks.append((self._seq, self._demands))
        self._last_sent = time.monotonic()
        return encode_request(
            self._signer, op, self._stream_id, self._seq, self.queue_id, position=position, weight=weight,
            wanted=self._weight + self._backlog + self._window if wanted is None else wanted,
            base=self._base, epoch=self._epoch,
            incarnation=self._incarnation, max_items=count, lease=self.timeout, maxsize=self.maxsize,
            payload=payload,
        )

    # ------------------------------------------------------------------ sender thread
    def _run(self, wake_r: socket.socket, wake_w: socket.socket, stop: threading.Event) -> None:
        sock: Any = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        # Kept across reconnections, so the server's answers find this socket again.
        sock.routing_id = b"P" + os.urandom(15)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r.fileno(), zmq.POLLIN)
        readable = True
        try:
            while not stop.is_set():
                if readable:
                    self._receive(sock)
                for message in self._round():
                    # zmq.Again: the send queue is full while disconnected; the re-send timer sends it again.
                    with contextlib.suppress(zmq.Again):
                        sock.send(message, _NOBLOCK)
                events = dict(poller.poll(self._idle_ms()))
                readable = sock in events
                if wake_r.fileno() in events:
                    try:
                        while wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
        except BaseException as exc:
            with self._cond:
                self._fail(RPCQueueError(
                    f"the sender thread of {self.endpoint} queue {self.queue_id!r} failed: {exc!r}"
                ))
                if self._stop is stop:
                    self._thread = self._stop = None  # the next put starts a new one
            raise
        finally:
            sock.close(linger=0)
            wake_r.close()
            wake_w.close()

    def _receive(self, sock: Any) -> None:
        while True:
            try:
                frame = sock.recv(_NOBLOCK)
            except zmq.Again:
                return
            try:
                state = decode_reply(self._signer, [frame])
            except ProtocolError:
                continue  # not from a server holding our key: ignore it
            self.on_state(state, by_sender=True)

    def on_state(self, state: Reply, by_sender: bool = False) -> None:
        """Take in an authenticated stream state from the server; one of another stream is ignored.

        The sender thread receives most states. A caller's thread passes on those that came on its
        request socket, ahead of a reply; the sender thread is then woken only when the state
        gives it work: newer items held back behind a caller's message, or a recall.
        """
        now = time.monotonic()
        with self._cond:
            if state.client_id != self._stream_id:
                return  # for a stream that ended
            self._quiet_since = now
            if state.status is Status.RESET or state.status is Status.SHUTDOWN:
                why = ("is shutting down" if state.status is Status.SHUTDOWN
                       else "restarted (it does not know this producer)")
                self._fail(ConnectionError(
                    f"the RPC queue server at {self.endpoint} {why}: {self.pending} item(s) put on queue "
                    f"{self.queue_id!r} and not confirmed may be lost"
                ))
                return
            if not self._incarnation:
                self._incarnation = state.incarnation
            if state.count > self._acked:
                unacked = self._unacked
                while unacked and unacked[0].last <= state.count:
                    self._acked_weight = unacked.popleft().weight_after
                self._acked = state.count
                self._progress_at = now
            if state.epoch == self._epoch and state.limit > self._limit:
                self._limit = state.limit
            asks = self._asks
            while asks and asks[0][0] <= state.seq:
                self._answered = asks.popleft()[1]
            if state.flags & FLAG_RECALL:
                self._recalled = True
            if state.status is Status.ERROR:
                self._failure = RPCQueueError(
                    f"{self.endpoint} queue {self.queue_id!r}: {bytes(state.payload).decode(errors='replace')}"
                )
                self._unreported = True
            if not by_sender and self._thread and (self._recalled or (self._outbox and self._acked >= self._hold)):
                self._wake_locked()
            self._cond.notify_all()

    def _round(self) -> list[bytes]:
        """The messages due now: accepted items, re-sends, a credit request, a release or a keep-alive."""
        now = time.monotonic()
        with self._cond:
            waiting = self._backlog > 0 or self._answered < self._demands
            if not self._expecting:
                self._quiet_since = now  # the clock starts with what is sent from now on
            self._expecting = bool(self._unacked or self._outbox or waiting)
            if self._expecting and now - self._quiet_since > self._silence_limit:
                self._fail(ConnectionError(
                    f"no reply from the RPC queue server at {self.endpoint} within {self.timeout}s "
                    f"(server down or unreachable, or a different authkey): {self.pending} item(s) put on "
                    f"queue {self.queue_id!r} and not confirmed may be lost"
                ))
                return []
            messages = []
            if self._unacked and now - self._progress_at >= self._resend_interval:
                messages = [self._data_message(sent) for sent in self._unacked]  # go-back-N
                self._progress_at = now
            if self._outbox and self._acked >= self._hold and self._incarnation:
                if self._lapsed(now):
                    messages.append(self._message(Op.CREDIT, position=self._acked + 1, weight=self._acked_weight))
                items, first, weight = self._take_outbox()
                self._packing = True
            else:
                items = None
            # Asked for unused credit: give it back unless items are on their way to use it. A
            # blocked put keeps its demand (and its place in line), without the extra window.
            release = self._recalled and not items and not self._outbox
            if self._recalled and (release or items):
                self._recalled = False
            if release and self._limit > self._weight:
                self._epoch += 1
                self._base = self._limit = self._weight  # keep only what was sent (the server waits for it)
                messages.append(self._message(
                    Op.CREDIT, position=self._acked + 1, weight=self._acked_weight,
                    wanted=self._weight + self._backlog,
                ))
            elif not items and (
                self._demands > self._asked or (waiting and now - self._last_sent >= self._resend_interval)
            ):
                messages.append(self._message(Op.CREDIT, position=self._acked + 1, weight=self._acked_weight))
            generation = self._generation
        if items is None:
            return messages
        sents, problems = self._pack(items, first, weight)  # pickling: outside the lock
        with self._cond:
            self._packing = False
            if self._generation != generation:
                return []  # the stream ended meanwhile; these items are counted as lost
            self._note_problems(problems)
            if not self._unacked:
                self._progress_at = now
            return messages + self._register(sents)

    def _idle_ms(self) -> int:
        """How long the sender may sleep; marks it idle (wake me on a put) when nothing waits to be sent."""
        now = time.monotonic()
        deadlines = [now + self._idle_cap]  # also how late a caller's own message may be noticed
        with self._cond:
            if self._outbox and self._acked >= self._hold and self._incarnation:
                return 0
            # Items held back behind a caller's own message are sent when its acknowledgement
            # comes in; until then a put need not wake the sender.
            self._sender_idle = not self._outbox
            waiting = self._backlog > 0 or self._answered < self._demands
            if self._unacked:
                deadlines.append(self._progress_at + self._resend_interval)
            if waiting:
                deadlines.append(self._last_sent + self._resend_interval)
            if self._unacked or waiting or self._outbox:
                deadlines.append(self._quiet_since + self._silence_limit)
        return max(0, math.ceil((min(deadlines) - now) * 1000))


_live_streams: weakref.WeakSet[ProducerStream] = weakref.WeakSet()


def _flush_at_exit() -> None:
    """At interpreter exit, confirm what live streams of this process still hold (each within its timeout)."""
    for stream in list(_live_streams):
        if stream.pending and stream._pid == os.getpid():  # not a parent's stream inherited by fork
            try:
                stream.flush(stream.timeout)
            except Exception as exc:
                log.warning("RPC queue %s %r: items not confirmed at exit: %s", stream.endpoint, stream.queue_id, exc)


atexit.register(_flush_at_exit)
