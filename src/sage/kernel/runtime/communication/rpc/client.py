"""The client side of the RPC queue: `queue.Queue`-like calls on a queue of a remote server.

Puts go into this process's producer stream (see `producer.py`): they return
once the stream accepts them within its credit, and `flush()` waits for the
server to confirm them. When the stream is idle, the calling thread sends
what it put itself, on its own socket, ahead of its next request.

Gets and `qsize()` are requests on the calling thread's own DEALER socket
(ZeroMQ sockets are not thread-safe), each answered by one reply. A blocking
get is cut into requests the server parks for at most `timeout / 2` each,
and every request must be answered within `timeout / 2` after its park time,
so a server that is gone is noticed within `timeout` seconds, however long
the caller is willing to block. While it waits, the client re-sends the same
request (same sequence number) every `timeout / 6`; the server answers a copy
from memory, so a get is never executed twice. A get's items stay on the
server, unconfirmed, until the client confirms it has them: by its next
request, or else by a CONFIRM that `confirmer.py` sends `timeout / 4` later.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from typing import Any

import zmq

from ..queue_descriptor.base_queue_descriptor import BatchFull, effective_timeout
from .auth import Signer
from .confirmer import confirmer
from .producer import ProducerStream, RPCQueueError
from .protocol import (
    MAX_QUEUE_ID_BYTES,
    Op,
    ProtocolError,
    Reply,
    Status,
    decode_reply,
    encode_request,
    loads_items,
)

__all__ = ["RPCQueueClient", "RPCQueueError"]

_NOBLOCK = int(zmq.NOBLOCK)
_RCVTIMEO = int(zmq.RCVTIMEO)


class _Channel:
    """One thread's request socket, client id and sequence number.

    `unconfirmed` is the sequence number of the latest get whose items the
    server has not been told this client has (0: none), `received_at` when
    they came; `confirm_due` belongs to the confirmer.
    """

    __slots__ = ("client_id", "seq", "socket", "unconfirmed", "received_at", "confirm_due")

    def __init__(self) -> None:
        self.client_id = os.urandom(16)
        self.seq = 0
        self.socket: Any = None
        self.unconfirmed = 0
        self.received_at = 0.0
        self.confirm_due = False

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def renew(self) -> None:
        """Close the socket and take a new identity, after a request whose reply never came.

        Its items may be on the server, unconfirmed: with the old id, the next request would
        confirm them (it is newer), and they would be lost. Under a new id nothing confirms
        them, so the server's lease puts them back on the queue. A confirmation the confirmer
        still holds for this channel reads `unconfirmed` (0 now) and sends nothing; if it read
        the old sequence number first, it names an id the server does not know, and is ignored.
        """
        self.close()
        self.unconfirmed = 0
        self.client_id = os.urandom(16)
        self.seq = 0


class RPCQueueClient:
    """Puts and gets on queue `queue_id` of the server at `host:port`.

    Follows `queue.Queue`: a put that finds no credit (the queue is full)
    blocks, or raises `queue.Full` at its timeout (`BatchFull` with the
    accepted count for `put_many`); a get on an empty queue blocks, or raises
    `queue.Empty`. Blocking waits happen on the server, so a blocked caller
    does not spin.

    A server that does not answer (down, unreachable, or rejecting a wrong
    key) makes a get raise `ConnectionError` within `timeout` seconds, and
    the next put or `flush()` once the producer stream has waited `timeout`
    for an answer; the outcome of that call, and of puts not flushed, is then
    unknown. Later calls use fresh sockets and a fresh stream, so a server
    restarted on the same port is reached again.
    """

    def __init__(self, host: str, port: int, queue_id: str, maxsize: int, authkey: bytes, timeout: float) -> None:
        if len(queue_id.encode("utf-8")) > MAX_QUEUE_ID_BYTES:
            raise ValueError(f"queue_id is longer than {MAX_QUEUE_ID_BYTES} bytes")
        self.endpoint = f"tcp://{host}:{port}"
        self.queue_id = queue_id
        self.maxsize = maxsize
        self.timeout = timeout
        self._signer = Signer(authkey)
        self._grace = timeout / 2
        self._resend_interval = timeout / 6
        self._producer = ProducerStream(self.endpoint, queue_id, maxsize, self._signer, timeout)
        self._local = threading.local()
        self._channels: list[_Channel] = []
        self._channels_lock = threading.Lock()

    # ------------------------------------------------------------------ queue API
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Accept one item for the queue; `queue.Full` when no credit comes within the timeout.

        Returns once the item is in this process's stream to the server, not
        once the server has it: `flush()` waits for that.
        """
        try:
            self._send_own(self._producer.put(item, effective_timeout(block, timeout)))
        except BatchFull:
            raise queue.Full from None

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        """Accept all `items` in order; `BatchFull(accepted)` at the timeout (None = wait forever).

        The first `accepted` items are in the stream and will be queued once;
        the caller sends only `items[accepted:]` again.
        """
        if items:
            self._send_own(self._producer.put_many(items if isinstance(items, list) else list(items), timeout))

    def flush(self, timeout: float | None = None) -> None:
        """Block until the server has queued every item this client accepted so far.

        `TimeoutError` after `timeout` seconds; `ConnectionError` when the
        server stopped answering (unconfirmed items may be lost);
        `RPCQueueError` or `ValueError` when items could not travel.
        """
        self._producer.flush(timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return one item; `queue.Empty` when none comes within the timeout."""
        return self.get_many(1, effective_timeout(block, timeout))[0]

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Return 1 to `max_items` items; `queue.Empty` when none comes within the timeout.

        Raises `RPCQueueError` when the items cannot be unpickled here; they
        count as received (and so gone), or they would come back forever.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reply = self._call(Op.GET, self._park_time(deadline), max_items=max_items)
            if reply.status is Status.OK:
                self._received(reply.seq)
                try:
                    return loads_items(reply.payload)
                except Exception as exc:
                    raise RPCQueueError(
                        f"{self.endpoint} queue {self.queue_id!r}: cannot unpickle {reply.count} item(s): {exc!r}"
                    ) from exc
            if reply.status is Status.EMPTY and self._expired(deadline):
                raise queue.Empty
            # EMPTY with time left: park again. RETRY: the items went back to the queue; ask again.

    def qsize(self) -> int:
        """Number of records in the remote queue (one round trip)."""
        return self._call(Op.QSIZE, 0.0).qsize

    def close(self) -> None:
        """Flush (within `timeout`), confirm the last gets, stop the sender thread and close every socket.

        Raises what `flush` raises; the sockets are closed even when the
        flush fails. Calls made later open new ones.
        """
        try:
            self._producer.close(self.timeout)
        finally:
            with self._channels_lock:
                for channel in self._channels:
                    if channel.unconfirmed and channel.socket is not None:
                        self._send(channel.socket, self._confirmation(channel, channel.unconfirmed))
                        channel.unconfirmed = 0
                    channel.close()
                self._channels.clear()
                self._local = threading.local()

    # ------------------------------------------------------------------ internals
    def _send_own(self, messages: list[bytes]) -> None:
        """Send the stream's messages the producer left to this thread (it was idle) on this thread's socket."""
        if messages:
            sock = self._channel().socket
            for message in messages:
                self._send(sock, message)

    def _park_time(self, deadline: float | None) -> float:
        if deadline is None:
            return self._grace
        return min(self._grace, max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _channel(self) -> _Channel:
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self._local.channel = _Channel()
            with self._channels_lock:
                self._channels.append(channel)
        if channel.socket is None:
            sock: Any = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger = 0
            # Kept across reconnections: the server answers a re-sent request to where the
            # client's replies went, and a new connection with this id takes that place.
            sock.routing_id = b"R" + os.urandom(15)
            sock.connect(self.endpoint)
            channel.socket = sock
        return channel

    def _call(self, op: Op, wait: float, max_items: int = 0) -> Reply:
        """Send one request, re-sending it until its reply comes; raise if none comes in time."""
        channel = self._channel()
        channel.seq += 1
        channel.unconfirmed = 0  # this request confirms the previous reply
        message = encode_request(
            self._signer, op, channel.client_id, channel.seq, self.queue_id, stream=self._producer.stream_id,
            wait=wait, max_items=max_items, lease=self.timeout, maxsize=self.maxsize,
        )
        sock = channel.socket
        now = time.monotonic()
        deadline = now + wait + self._grace
        resend_at = now + wait + self._resend_interval
        self._send(sock, message)
        while True:
            now = time.monotonic()
            if now >= deadline:
                channel.renew()  # the reply may have been lost: nothing may confirm its items
                raise ConnectionError(
                    f"no reply from the RPC queue server at {self.endpoint} within {self.timeout}s "
                    f"(server down or unreachable, or a different authkey)"
                )
            if now >= resend_at:
                self._send(sock, message)
                resend_at = now + self._resend_interval
            # A blocking receive with a timeout: one call, where `poll()` builds a poller each time.
            sock.setsockopt(_RCVTIMEO, math.ceil((min(deadline, resend_at) - now) * 1000))
            try:
                frame = sock.recv()
            except zmq.Again:
                continue
            try:
                reply = decode_reply(self._signer, [frame])
            except ProtocolError:
                continue  # not from a server holding our key: ignore it, never unpickle it
            if reply.client_id != channel.client_id:
                # The state of this process's producer stream, which the server sends ahead of
                # the reply when it has one (of a stream that ended: ignored).
                self._producer.on_state(reply)
                continue
            if reply.seq != channel.seq:
                continue  # a late answer to an earlier, already answered copy
            return self._check(reply)

    def _received(self, seq: int) -> None:
        """Note that this thread has the items of get `seq`: its next request, or the confirmer, tells the server."""
        channel = self._channel()
        channel.received_at = time.monotonic()
        channel.unconfirmed = seq
        confirmer().confirm_later(self.endpoint, self._signer, self.queue_id, channel, self.timeout / 4)

    def _confirmation(self, channel: _Channel, seq: int) -> bytes:
        return encode_request(self._signer, Op.CONFIRM, channel.client_id, seq, self.queue_id)

    @staticmethod
    def _send(sock: Any, message: bytes) -> None:
        # zmq.Again: the send queue is full while disconnected; the next re-send tries again.
        with contextlib.suppress(zmq.Again):
            sock.send(message, _NOBLOCK)

    def _check(self, reply: Reply) -> Reply:
        if reply.status is Status.ERROR:
            text = bytes(reply.payload).decode(errors="replace")
            raise RPCQueueError(f"{self.endpoint} queue {self.queue_id!r}: {text}")
        if reply.status is Status.SHUTDOWN:
            raise ConnectionError(f"the RPC queue server at {self.endpoint} is shutting down")
        return reply

    def __repr__(self) -> str:
        return f"RPCQueueClient({self.endpoint}, queue_id={self.queue_id!r})"
