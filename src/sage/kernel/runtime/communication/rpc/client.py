"""The client side of the RPC queue: `queue.Queue`-like calls on a queue of a remote server.

Each thread gets its own DEALER socket and client id (ZeroMQ sockets are not
thread-safe), so a task thread and a listener thread can share one client.

A call sends one request and waits for its reply. A blocking call is cut into
requests the server parks for at most `timeout / 2` each, and every request
must be answered within `timeout / 2` after its park time, so a server that
is gone is noticed within `timeout` seconds, however long the caller is
willing to block. While it waits, the client re-sends the same request (same
sequence number) every `timeout / 6`: a reply lost with a broken connection
is then answered again from the server's memory, never executed twice.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from typing import Any

import zmq

from ..queue_descriptor.base_queue_descriptor import BatchFull, effective_timeout
from .auth import Signer
from .protocol import (
    MAX_MESSAGE_BYTES,
    MAX_QUEUE_ID_BYTES,
    Op,
    ProtocolError,
    Reply,
    Status,
    decode_reply,
    dumps_items,
    encode_request,
    loads_items,
    request_header_size,
)


_NOBLOCK = int(zmq.NOBLOCK)


class RPCQueueError(RuntimeError):
    """The server answered with an error (for example, it could not unpickle a batch)."""


class _Channel:
    """One thread's socket, client id and sequence number."""

    __slots__ = ("client_id", "seq", "socket")

    def __init__(self) -> None:
        self.client_id = os.urandom(16)
        self.seq = 0
        self.socket: Any = None

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None


class RPCQueueClient:
    """Puts and gets on queue `queue_id` of the server at `host:port`.

    Follows `queue.Queue`: a put on a full queue blocks, or raises `queue.Full`
    at its timeout (`BatchFull` with the accepted count for `put_many`); a get
    on an empty queue blocks, or raises `queue.Empty`. Blocking waits happen on
    the server, so a blocked caller does not spin.

    A server that does not answer (down, unreachable, or rejecting a wrong
    key) makes the call raise `ConnectionError` within `timeout` seconds; the
    outcome of that call is then unknown. The next call uses a fresh socket,
    so a server restarted on the same port is reached again.
    """

    def __init__(self, host: str, port: int, queue_id: str, maxsize: int, authkey: bytes, timeout: float) -> None:
        if len(queue_id.encode("utf-8")) > MAX_QUEUE_ID_BYTES:
            raise ValueError(f"queue_id is longer than {MAX_QUEUE_ID_BYTES} bytes")
        self.endpoint = f"tcp://{host}:{port}"
        self.queue_id = queue_id
        self.maxsize = maxsize
        self.timeout = timeout
        self._signer = Signer(authkey)
        self._max_payload = MAX_MESSAGE_BYTES - request_header_size(queue_id)
        self._grace = timeout / 2
        self._resend_interval = timeout / 6
        self._local = threading.local()
        self._channels: list[_Channel] = []
        self._channels_lock = threading.Lock()

    # ------------------------------------------------------------------ queue API
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put one item; `queue.Full` when there is no room within the timeout."""
        try:
            self.put_many([item], effective_timeout(block, timeout))
        except BatchFull:
            raise queue.Full from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return one item; `queue.Empty` when none comes within the timeout."""
        return self.get_many(1, effective_timeout(block, timeout))[0]

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        """Put all `items` in order; `BatchFull(accepted)` at the timeout (None = wait forever).

        A batch that pickles to more than the message limit goes in several
        messages; a single item that does raises `ValueError`.
        """
        if items:
            deadline = None if timeout is None else time.monotonic() + timeout
            self._put(list(items), deadline, 0)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Return 1 to `max_items` items; `queue.Empty` when none comes within the timeout."""
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reply = self._call(Op.GET, self._park_time(deadline), max_items=max_items)
            if reply.status is Status.OK:
                return loads_items(reply.payload)
            if self._expired(deadline):
                raise queue.Empty

    def qsize(self) -> int:
        """Number of items in the remote queue (one round trip)."""
        return self._call(Op.QSIZE, 0.0).qsize

    def close(self) -> None:
        """Close every thread's socket. Calls made later open new ones."""
        with self._channels_lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._local = threading.local()

    # ------------------------------------------------------------------ internals
    def _put(self, items: list[Any], deadline: float | None, offset: int) -> None:
        payload = dumps_items(items)
        if len(payload) > self._max_payload:
            if len(items) == 1:
                raise ValueError(f"one item pickles to {len(payload)} bytes, over the {self._max_payload}-byte limit")
            half = len(items) // 2
            self._put(items[:half], deadline, offset)
            self._put(items[half:], deadline, offset + half)
            return
        accepted = 0
        while True:
            reply = self._call(Op.PUT, self._park_time(deadline), payload=payload)
            accepted += reply.count
            if reply.status is Status.OK:
                return
            if self._expired(deadline):
                raise BatchFull(offset + accepted)
            if reply.count:
                payload = dumps_items(items[accepted:])

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
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger = 0
            # Kept across reconnections: the server answers a re-sent request to where the
            # client's replies went, and a new connection with this id takes that place.
            sock.routing_id = b"R" + os.urandom(15)
            sock.connect(self.endpoint)
            channel.socket = sock
        return channel

    def _call(self, op: Op, wait: float, max_items: int = 0, payload: bytes = b"") -> Reply:
        """Send one request, re-sending it until its reply comes; raise if none comes in time."""
        channel = self._channel()
        channel.seq += 1
        message = encode_request(
            self._signer, op, channel.client_id, channel.seq, wait, max_items, self.maxsize, self.queue_id, payload
        )
        sock = channel.socket
        now = time.monotonic()
        deadline = now + wait + self._grace
        resend_at = now + wait + self._resend_interval
        self._send(sock, message)
        while True:
            now = time.monotonic()
            if now >= deadline:
                channel.close()
                raise ConnectionError(
                    f"no reply from the RPC queue server at {self.endpoint} within {self.timeout}s "
                    f"(server down or unreachable, or a different authkey)"
                )
            if now >= resend_at:
                self._send(sock, message)
                resend_at = now + self._resend_interval
            if not sock.poll(math.ceil((min(deadline, resend_at) - now) * 1000)):
                continue
            try:
                reply = decode_reply(self._signer, [sock.recv()])
            except ProtocolError:
                continue  # not from a server holding our key: ignore it, never unpickle it
            if reply.client_id != channel.client_id or reply.seq != channel.seq:
                continue  # a late answer to an earlier, already answered copy
            return self._check(reply)

    @staticmethod
    def _send(sock: Any, message: bytes) -> None:
        try:
            sock.send(message, _NOBLOCK)
        except zmq.Again:
            pass  # the send queue is full while disconnected; the next re-send tries again

    def _check(self, reply: Reply) -> Reply:
        if reply.status is Status.ERROR:
            raise RPCQueueError(f"{self.endpoint} queue {self.queue_id!r}: {bytes(reply.payload).decode(errors='replace')}")
        if reply.status is Status.SHUTDOWN:
            raise ConnectionError(f"the RPC queue server at {self.endpoint} is shutting down")
        return reply

    def __repr__(self) -> str:
        return f"RPCQueueClient({self.endpoint}, queue_id={self.queue_id!r})"
