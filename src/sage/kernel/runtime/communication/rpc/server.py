"""The RPC queue server: named bounded queues in this process, served over ZeroMQ.

One I/O thread owns the ROUTER socket and does all network work: it
authenticates and answers requests, parks the ones that must wait, and
answers those when the queue changes or their wait ends. It never blocks on a
queue, so one slow queue never holds up another. Callers' threads only start,
stop and create queues; local threads use the hosted queues directly.

Every client (one per thread of a descriptor) has an id and numbers its
requests. The server remembers each client's last sequence number and the
reply it sent, so a request the client re-sends after a lost reply is answered
again from memory, never executed twice. Only a request newer than the
client's last one changes where its replies go, so a replayed copy can
neither redirect a parked reply nor receive one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import zmq

from ..queue_descriptor.rpc_queue_descriptor import DEFAULT_MAXSIZE, DEFAULT_TIMEOUT, RPCQueueDescriptor
from . import local
from .auth import Signer, resolve_authkey
from .hosted_queue import HostedQueue, Parked
from .protocol import (
    MAX_MESSAGE_BYTES,
    Op,
    ProtocolError,
    Request,
    Status,
    decode_request,
    dumps_items,
    encode_reply,
    loads_items,
    recv_frames,
)

log = logging.getLogger(__name__)

POLL_CAP = 1.0
"""Seconds: the I/O loop re-checks its stop flag at least this often."""

RCVHWM = 64
"""Messages ZeroMQ buffers per peer before it stops reading that peer's socket."""

COUNTERS = (
    "messages",  # every message received, good or bad
    "requests",  # authenticated requests executed
    "replies",
    "duplicates",  # re-sent requests answered from memory
    "stale",  # re-sent requests older than the client's latest, ignored
    "rejected_malformed",  # wrong frame count, short or bad header
    "rejected_oversized",  # more than max_message_bytes
    "rejected_auth",  # MAC does not match the key: never parsed, never unpickled
    "bad_payload",  # authenticated, but the batch would not unpickle
    "evicted_clients",
    "abandoned",  # parked requests dropped because their client sent a newer one (it gave up waiting)
    "errors",  # unexpected exceptions while serving one request
)

_WILDCARD_HOSTS = ("0.0.0.0", "*")
_SNDMORE = int(zmq.SNDMORE)  # a plain int: flag arithmetic on pyzmq's enum costs more than a send


@dataclass(slots=True, eq=False)
class _Client:
    """What the server remembers of one client: where to answer, its last request and reply."""

    client_id: bytes
    identity: bytes
    seq: int = 0
    reply: bytes | None = None  # None while its latest request is parked
    parked: Any = None  # its latest request while it waits on a queue


class RPCQueueServer:
    """Hosts named bounded queues and serves them to authenticated clients over TCP.

    `RPCQueueServer(host, port=0, authkey=None)`: `port` 0 lets the OS pick a
    free port (read `.port` after `start()`); `authkey` defaults to the
    `SAGE_KERNEL_AUTHKEY` environment variable, and a server without a key
    refuses to be built (`AuthKeyError`). `advertise_host` is the host name put
    into descriptors (defaults to `host`, or this machine's name when binding
    to all interfaces).

    Limits: a request bigger than `max_message_bytes` is rejected and counted;
    the server remembers at most `max_clients` clients (the least recently
    active idle ones are forgotten first).

    Use as a context manager, or call `start()` and `stop()`. Queues are
    created by `create_queue()`, or by the first request that names them (with
    the maxsize that request carries). `stop()` drops every queued item.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        authkey: bytes | str | None = None,
        *,
        advertise_host: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_clients: int = 1024,
    ) -> None:
        self._key = resolve_authkey(authkey)
        self._signer = Signer(self._key)
        self.host = host
        self.advertise_host = advertise_host or (socket.gethostname() if host in _WILDCARD_HOSTS else host)
        self.max_message_bytes = max_message_bytes
        self.max_clients = max_clients
        self._requested_port = port
        self._port: int | None = None
        self._queues: dict[str, HostedQueue] = {}
        self._queues_lock = threading.Lock()
        self._clients: OrderedDict[bytes, _Client] = OrderedDict()
        self._timers: list[tuple[float, int, Parked]] = []
        self._timer_order = itertools.count()
        self._finished_timers = 0
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._sock: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The TCP port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the RPC queue server has not been started")
        return self._port

    @property
    def address(self) -> str:
        """The ZeroMQ endpoint clients connect to."""
        return f"tcp://{self.advertise_host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def start(self, timeout: float = 10.0) -> "RPCQueueServer":
        """Bind and start the I/O thread; return self.

        Raises `OSError` when the address cannot be bound (port in use) and
        `RuntimeError` when called twice or when the thread does not come up
        within `timeout`.
        """
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("an RPC queue server starts once; make a new one to serve again")
        self._thread = threading.Thread(target=self._run, name=f"rpc-queue-server-{self.host}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the RPC queue server did not start within {timeout}s")
        if self._start_error is not None:
            self._thread.join()
            raise OSError(
                f"cannot bind the RPC queue server to tcp://{self.host}:{self._requested_port}: {self._start_error}"
            ) from self._start_error
        local.register(self, {self.host, self.advertise_host}, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Answer parked requests with "shutting down", stop the I/O thread, drop the queues.

        Idempotent. Waits up to `timeout` for the thread to finish.
        """
        local.unregister(self)
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._queues_lock:
            self._queues.clear()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "RPCQueueServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ queues
    def create_queue(
        self, queue_id: str | None = None, maxsize: int = DEFAULT_MAXSIZE, timeout: float = DEFAULT_TIMEOUT
    ) -> RPCQueueDescriptor:
        """Create (or find) the queue `queue_id` and return a descriptor for it.

        The descriptor reaches the queue from any process; in this process it
        attaches without a network hop. It holds this server's key in memory
        only (see `RPCQueueDescriptor`). Raises `ValueError` when the queue
        exists with another maxsize.
        """
        descriptor = RPCQueueDescriptor(self.advertise_host, self.port, queue_id, maxsize, self._key, timeout)
        hosted = self.attach_queue(descriptor.queue_id, maxsize)
        if hosted.maxsize != maxsize:
            raise ValueError(f"queue {descriptor.queue_id!r} exists with maxsize {hosted.maxsize}, not {maxsize}")
        return descriptor

    def attach_queue(self, queue_id: str, maxsize: int) -> HostedQueue:
        """The hosted queue `queue_id`, created with `maxsize` if it does not exist (thread-safe)."""
        hosted = self._queues.get(queue_id)
        if hosted is None:
            with self._queues_lock:
                hosted = self._queues.get(queue_id)
                if hosted is None:
                    hosted = self._queues[queue_id] = HostedQueue(maxsize, self._wake)
        return hosted

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the server's counters (see `COUNTERS`), plus current clients, queues and parked requests."""
        snapshot = dict(self._counters)
        queues = list(self._queues.values())
        snapshot["clients"] = len(self._clients)
        snapshot["queues"] = len(queues)
        snapshot["parked"] = sum(len(q.parked_puts) + len(q.parked_gets) for q in queues)
        return snapshot

    def _wake(self) -> None:
        # Called from any thread; a full socket buffer already holds a wake-up.
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # ------------------------------------------------------------------ I/O thread
    def _run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.linger = 0
        sock.rcvhwm = RCVHWM
        # A client that reconnects keeps its routing id; its new connection takes over.
        sock.router_handover = 1
        # ZeroMQ disconnects a peer whose frame is far over the limit, so memory
        # stays bounded; frames up to twice the limit reach us and are counted.
        sock.maxmsgsize = 2 * self.max_message_bytes
        try:
            sock.bind(f"tcp://{self.host}:{self._requested_port or '*'}")
            self._port = int(sock.last_endpoint.rsplit(b":", 1)[1])
        except zmq.ZMQError as exc:
            sock.close()
            self._start_error = exc
            self._ready.set()
            return
        self._sock = sock
        self._ready.set()
        try:
            self._serve()
        finally:
            self._shutdown_parked()
            sock.close(linger=0)

    def _serve(self) -> None:
        sock = self._sock
        wake_fd = self._wake_r.fileno()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_fd, zmq.POLLIN)  # reported back by its number
        while not self._stopping.is_set():
            events = dict(poller.poll(self._poll_timeout_ms()))
            if wake_fd in events:
                self._drain_wake()
                for hosted in list(self._queues.values()):
                    if hosted.has_parked:
                        hosted.serve_parked(self._answer)
            if sock in events:
                # One message per turn: polling again costs no more than asking whether another waits.
                try:
                    frames = recv_frames(sock, zmq.NOBLOCK)
                except zmq.Again:
                    pass
                else:
                    self._handle(frames)
            self._expire_timers()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _poll_timeout_ms(self) -> int:
        if not self._timers:
            return int(POLL_CAP * 1000)
        wait = self._timers[0][0] - time.monotonic()
        return max(0, min(int(POLL_CAP * 1000), math.ceil(wait * 1000)))

    def _handle(self, frames: list[bytes]) -> None:
        self._counters["messages"] += 1
        try:
            request = decode_request(self._signer, frames[1:], self.max_message_bytes)
        except ProtocolError as exc:
            self._counters["rejected_" + exc.reason] += 1
            log.debug("rejected a message: %s", exc)
            return
        try:
            self._dispatch(frames[0], request)
        except Exception:
            # One bad request must not take the server down for everyone else.
            self._counters["errors"] += 1
            log.exception("RPC queue server failed to serve a %s request on queue %r", request.op.name, request.queue_id)

    def _dispatch(self, identity: bytes, request: Request) -> None:
        client = self._clients.get(request.client_id)
        if client is None:
            client = self._clients[request.client_id] = _Client(request.client_id, identity)
            self._evict_clients()
        else:
            self._clients.move_to_end(request.client_id)
            if request.seq < client.seq:
                self._counters["stale"] += 1
                return
            if request.seq == client.seq:
                # A re-send, or a replay by whoever captured it: answered to where the
                # client's replies go, never to the sender of the copy.
                self._counters["duplicates"] += 1
                if client.reply is not None:
                    self._send(client.identity, client.reply)
                return
        # A newer request: only now may the address of the client's replies change.
        client.identity = identity
        self._abandon(client)
        client.seq = request.seq
        client.reply = None
        self._counters["requests"] += 1
        hosted = self.attach_queue(request.queue_id, request.maxsize)
        if request.op is Op.QSIZE:
            self._reply(client, Status.OK, qsize=hosted.qsize())
            return
        if request.op is Op.PUT:
            try:
                items = loads_items(request.payload)
            except Exception as exc:
                self._counters["bad_payload"] += 1
                self._reply(client, Status.ERROR, payload=f"the server cannot unpickle the batch: {exc!r}".encode())
                return
            parked = Parked(hosted, client, Op.PUT, items=items)
        elif request.max_items < 1:
            self._reply(client, Status.ERROR, payload=b"max_items must be >= 1")
            return
        else:
            parked = Parked(hosted, client, Op.GET, max_items=request.max_items)
        client.parked = parked
        hosted.park(parked)
        hosted.serve_parked(self._answer)
        if parked.done:
            return
        if request.wait <= 0:
            hosted.unpark(parked)
            self._answer_timeout(parked)
        else:
            parked.deadline = time.monotonic() + request.wait
            heapq.heappush(self._timers, (parked.deadline, next(self._timer_order), parked))

    def _abandon(self, client: _Client) -> None:
        """Drop the client's parked request when it sends a newer one.

        The client only moves on after giving up on the old request (its
        timeout passed, it raised `ConnectionError`), so nobody waits for that
        answer: a parked get must not take items nobody will read, and its
        late reply must not be taken for the answer to the newer request.
        Items a parked put already placed stay queued (the client was told the
        outcome is unknown).
        """
        parked, client.parked = client.parked, None
        if parked is None or parked.done:
            return
        parked.queue.unpark(parked)
        parked.done = True
        if parked.deadline is not None:
            self._finished_timers += 1
        self._counters["abandoned"] += 1

    def _evict_clients(self) -> None:
        while len(self._clients) > self.max_clients:
            idle = next((cid for cid, c in self._clients.items() if c.reply is not None), None)
            if idle is None:
                return
            del self._clients[idle]
            self._counters["evicted_clients"] += 1

    def _answer(self, parked: Parked, items: list[Any]) -> None:
        """Answer a parked request that finished (all items put, or items got)."""
        parked.done = True
        if parked.deadline is not None:
            self._finished_timers += 1
        hosted = parked.queue
        if parked.op is Op.PUT:
            self._reply(parked.client, Status.OK, count=parked.accepted, qsize=hosted.qsize())
            return
        try:
            payload = dumps_items(items)
        except Exception as exc:
            self._counters["errors"] += 1
            self._reply(parked.client, Status.ERROR, payload=f"the server cannot pickle the items: {exc!r}".encode())
            return
        self._reply(parked.client, Status.OK, count=len(items), qsize=hosted.qsize(), payload=payload)

    def _answer_timeout(self, parked: Parked) -> None:
        parked.done = True
        status = Status.FULL if parked.op is Op.PUT else Status.EMPTY
        self._reply(parked.client, status, count=parked.accepted, qsize=parked.queue.qsize())

    def _expire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            parked = heapq.heappop(timers)[2]
            if parked.done:
                self._finished_timers -= 1
                continue
            parked.queue.unpark(parked)
            self._answer_timeout(parked)
        # Requests finished early leave their timers behind; drop them in bulk.
        if self._finished_timers > 64 and self._finished_timers * 2 > len(timers):
            self._timers = [t for t in timers if not t[2].done]
            heapq.heapify(self._timers)
            self._finished_timers = 0

    def _reply(self, client: _Client, status: Status, count: int = 0, qsize: int = 0, payload: bytes = b"") -> None:
        client.reply = encode_reply(self._signer, status, client.client_id, client.seq, count, qsize, payload)
        self._send(client.identity, client.reply)

    def _send(self, identity: bytes, message: bytes) -> None:
        # A ROUTER drops messages to peers that are gone; the client re-sends and gets the remembered reply.
        self._sock.send(identity, _SNDMORE)
        self._sock.send(message)
        self._counters["replies"] += 1

    def _shutdown_parked(self) -> None:
        for hosted in list(self._queues.values()):
            for parked in [*hosted.parked_puts, *hosted.parked_gets]:
                parked.done = True
                self._reply(parked.client, Status.SHUTDOWN, count=parked.accepted)
            hosted.parked_puts.clear()
            hosted.parked_gets.clear()
            hosted.has_parked = False

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._port is not None else "not started"
        return f"RPCQueueServer({self.host!r}, {state}, running={self.running})"
