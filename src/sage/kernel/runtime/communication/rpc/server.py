"""The RPC queue server: named bounded queues in this process, served over ZeroMQ.

One I/O thread owns the ROUTER socket and does all network work: it
authenticates messages, queues what producers send within their credit,
grants credit as room frees, answers gets (parking those that must wait), and
runs the timers. It never blocks on a queue, so one slow queue never holds up
another. Callers' threads only start, stop and create queues; local threads
use the hosted queues directly.

Producers send on *streams*: items carry consecutive positions, so a re-sent
message is queued once, and every message the server handles is answered,
in batches, by the stream's state (last position queued, credit limit).

Consumers send *requests*. A get's items stay unconfirmed until the consumer
confirms them (explicitly, or by any newer request); if it does not within
its lease, or its reply cannot be delivered (ROUTER_MANDATORY reports a peer
that is gone), they go back to the front of the queue, in order.

Replay safety: only an authenticated message newer than its client's last one
may change where that client's replies go. A copy of an older or the current
message is ignored or answered to the address the client last used.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ..queue_descriptor.rpc_queue_descriptor import DEFAULT_MAXSIZE, DEFAULT_TIMEOUT, RPCQueueDescriptor
from .auth import Signer, resolve_authkey
from .hosted_queue import HostedQueue, ParkedGet, Stream
from .local import register, unregister
from .protocol import (
    FLAG_RECALL,
    MAX_MESSAGE_BYTES,
    NO_STREAM,
    STREAM_OPS,
    Op,
    ProtocolError,
    Request,
    Status,
    decode_request,
    dumps_items,
    encode_reply,
    loads_items,
)

log = logging.getLogger(__name__)

POLL_CAP = 1.0
"""Seconds: the I/O loop re-checks its stop flag at least this often."""

BURST = 64
"""Messages handled before the stream states they produced are sent."""

HOLD_MS = 1
"""How long the state of a stream whose process also gets from the queue may wait for a reply to go with."""

RCVHWM = 64
"""Messages ZeroMQ buffers per peer before it stops reading that peer's socket."""

COUNTERS = (
    "messages",  # every message received, good or bad
    "requests",  # authenticated messages handled (stream messages and requests)
    "replies",  # messages sent: replies, answers from memory, stream states
    "duplicates",  # re-sent requests answered from memory, and items a producer sent again
    "stale",  # copies of messages older than their client's latest: ignored (replays, late re-sends)
    "rejected_malformed",  # wrong frame count, short or bad header
    "rejected_oversized",  # more than max_message_bytes
    "rejected_auth",  # MAC does not match the key: never parsed, never unpickled
    "bad_payload",  # authenticated, but the batch would not unpickle
    "evicted_clients",
    "abandoned",  # parked gets dropped because their client sent a newer request (it gave up waiting)
    "unreachable",  # messages to a peer that is gone (ROUTER_MANDATORY): what it was given is taken back
    "overflows",  # messages dropped because the peer does not read (its pipe is full): it asks again
    "returned",  # items a consumer never confirmed, put back at the front of their queue
    "lease_expired",  # gets whose items went back because the consumer did not confirm in time
    "recalls",  # producers asked to give back unused credit because others wait for it
    "revoked",  # producers whose unused credit was taken back (gone, or silent past their lease)
    "unknown_streams",  # data on a stream the server does not know (it restarted): refused with RESET
    "errors",  # unexpected exceptions while serving one message
)

_WILDCARD_HOSTS = ("0.0.0.0", "*")
_SNDMORE = int(zmq.SNDMORE)  # plain ints: flag arithmetic on pyzmq's enums costs more than a send
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS, _POLLIN, _RCVMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE)


def _recv_frames(sock: Any) -> list[bytes]:
    """Receive one whole multipart message that is known to be waiting, whatever its frame count."""
    frames = [sock.recv()]
    while sock.getsockopt(_RCVMORE):
        frames.append(sock.recv())
    return frames


@dataclass(slots=True, eq=False)
class _Timer:
    action: Callable[[], None]
    cancelled: bool = False


@dataclass(slots=True, eq=False)
class _Unconfirmed:
    """Items a get reply carried that its consumer has not confirmed yet."""

    queue: HostedQueue
    items: list[Any]
    timer: _Timer | None = None


@dataclass(slots=True, eq=False)
class _Client:
    """What the server remembers of one request channel: where to answer, its last request and reply."""

    client_id: bytes
    identity: bytes
    seq: int = 0
    reply: bytes | None = None  # the answer to `seq`; None while it is parked
    stream: bytes = NO_STREAM  # the producer stream of the client's process that `seq` named
    parked: ParkedGet | None = None
    unconfirmed: _Unconfirmed | None = None
    lease: float = DEFAULT_TIMEOUT


class RPCQueueServer:
    """Hosts named bounded queues and serves them to authenticated clients over TCP.

    `RPCQueueServer(host, port=0, authkey=None)`: `port` 0 lets the OS pick a
    free port (read `.port` after `start()`); `authkey` defaults to the
    `SAGE_KERNEL_AUTHKEY` environment variable, and a server without a key
    refuses to be built (`AuthKeyError`). `advertise_host` is the host name put
    into descriptors (defaults to `host`, or this machine's name when binding
    to all interfaces).

    Limits: a message bigger than `max_message_bytes` is rejected and counted;
    the server remembers at most `max_clients` request channels and as many
    producer streams (idle ones are forgotten first).

    Use as a context manager, or call `start()` and `stop()`. Queues are
    created by `create_queue()`, or by the first message that names them (with
    the maxsize that message carries). `stop()` drops every queued item.
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
        # Tells producers that this is not the server they sent to before a restart (never 0: "none yet").
        self._incarnation = int.from_bytes(os.urandom(4), "little") or 1
        self.host = host
        self.advertise_host = advertise_host or (socket.gethostname() if host in _WILDCARD_HOSTS else host)
        self.max_message_bytes = max_message_bytes
        self.max_clients = max_clients
        self._requested_port = port
        self._port: int | None = None
        self._queues: dict[str, HostedQueue] = {}
        self._queues_lock = threading.Lock()
        self._clients: OrderedDict[bytes, _Client] = OrderedDict()
        self._streams: OrderedDict[bytes, Stream] = OrderedDict()
        self._to_tell: dict[bytes, Stream] = {}  # streams whose new state is sent after this burst
        self._held: dict[bytes, Stream] = {}  # of those, the ones that wait one more poll (see `_tell_streams`)
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_order = itertools.count()
        self._cancelled_timers = 0
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

    def start(self, timeout: float = 10.0) -> RPCQueueServer:
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
        register(self, {self.host, self.advertise_host}, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Tell waiting clients "shutting down", stop the I/O thread, drop the queues.

        Idempotent. Waits up to `timeout` for the thread to finish.
        """
        unregister(self)
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._queues_lock:
            self._queues.clear()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> RPCQueueServer:
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
        """A snapshot of the server's counters (see `COUNTERS`), plus current numbers.

        `clients` (request channels), `streams` (producer streams), `queues`,
        `parked` (remote gets waiting for items and producers waiting for
        credit) and `unconfirmed` (get replies not confirmed yet).
        """
        snapshot = dict(self._counters)
        queues = list(self._queues.values())
        clients = list(self._clients.values())
        snapshot["clients"] = len(clients)
        snapshot["streams"] = len(self._streams)
        snapshot["queues"] = len(queues)
        snapshot["parked"] = sum(len(q.parked_gets) + len(q.starved) for q in queues)
        snapshot["unconfirmed"] = sum(c.unconfirmed is not None for c in clients)
        return snapshot

    def _wake(self) -> None:
        # Called from any thread; a full socket buffer already holds a wake-up.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------------ I/O thread
    def _run(self) -> None:
        sock: Any = zmq.Context.instance().socket(zmq.ROUTER)
        sock.linger = 0
        sock.rcvhwm = RCVHWM
        # A send to a peer that is gone fails at once instead of vanishing, so a
        # get's items go straight back to the queue.
        sock.router_mandatory = 1
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
            self._shutdown_waiters()
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
                    if hosted.has_waiters:
                        self._serve_waiters(hosted)
            if sock in events:
                # Up to BURST messages while more are waiting (asking costs less than a failed recv).
                for _ in range(BURST):
                    self._handle(_recv_frames(sock))
                    if not sock.getsockopt(_EVENTS) & _POLLIN:
                        break
            self._expire_timers()
            if self._to_tell:
                self._tell_streams()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _poll_timeout_ms(self) -> int:
        if self._held:
            return HOLD_MS
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
            if request.op in STREAM_OPS:
                self._on_stream(frames[0], request)
            else:
                self._on_request(frames[0], request)
        except Exception:
            # One bad message must not take the server down for everyone else.
            self._counters["errors"] += 1
            log.exception(
                "RPC queue server failed to serve a %s message on queue %r", request.op.name, request.queue_id
            )

    def _send(self, identity: bytes, message: bytes, state: bytes | None = None) -> bool:
        """Send one message, after a stream `state` in the same ZeroMQ message if given; False when
        the peer is gone (the caller takes back what it gave it).

        A peer whose pipe is full (it does not read) loses the message, as a
        broken connection would: it asks again, and is answered again.
        """
        sock = self._sock
        try:
            sock.send(identity, _SNDMORE | _NOBLOCK)
            if state is not None:
                sock.send(state, _SNDMORE | _NOBLOCK)  # accepted with its first frame: no error here
            sock.send(message, _NOBLOCK)
        except zmq.Again:
            self._counters["overflows"] += 1
            return True
        except zmq.ZMQError:  # EHOSTUNREACH: no connected peer has this routing id (ROUTER_MANDATORY)
            self._counters["unreachable"] += 1
            return False
        self._counters["replies"] += 1 if state is None else 2
        return True

    # ------------------------------------------------------------------ timers
    def _schedule(self, delay: float, action: Callable[[], None]) -> _Timer:
        timer = _Timer(action)
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_order), timer))
        return timer

    def _cancel(self, timer: _Timer | None) -> None:
        if timer is not None and not timer.cancelled:
            timer.cancelled = True
            self._cancelled_timers += 1

    def _expire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if timer.cancelled:
                self._cancelled_timers -= 1
                continue
            timer.cancelled = True  # fired: a later cancel must not count it
            timer.action()
        # Cancelled timers stay in the heap; drop them in bulk once they are most of it.
        if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(timers):
            self._timers = [t for t in timers if not t[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    # ------------------------------------------------------------------ consumers: requests
    def _on_request(self, identity: bytes, request: Request) -> None:
        client = self._clients.get(request.client_id)
        if client is None:
            if request.op is Op.CONFIRM:
                self._counters["stale"] += 1  # confirms a reply this server never sent (it restarted)
                return
            client = self._clients[request.client_id] = _Client(request.client_id, identity)
            self._evict_clients()
        else:
            self._clients.move_to_end(request.client_id)
            if request.seq == client.seq and request.op is Op.CONFIRM:
                self._confirm(client)
                return
            if request.seq == client.seq:
                # A re-send (or a replay): answered from memory, to where the client's replies go.
                self._counters["duplicates"] += 1
                if client.reply is not None:
                    self._send(client.identity, client.reply)
                return
            if request.seq < client.seq or request.op is Op.CONFIRM:
                self._counters["stale"] += 1
                return
        # A newer request: only now may the address of the client's replies change.
        client.identity = identity
        self._confirm(client)  # the client moved on, so it has the previous reply
        self._abandon(client)
        client.seq = request.seq
        client.reply = None
        client.lease = request.lease or DEFAULT_TIMEOUT
        self._counters["requests"] += 1
        hosted = self.attach_queue(request.queue_id, request.maxsize)
        # The producer stream of the client's process to this queue: its state may go with the reply.
        stream = self._streams.get(request.stream) if request.stream != NO_STREAM else None
        if stream is not None and stream.queue is hosted:
            stream.gets_too = True
            client.stream = request.stream
        else:
            client.stream = NO_STREAM
        if request.op is Op.QSIZE:
            self._reply(client, Status.OK, qsize=hosted.qsize())
            return
        if request.max_items < 1:
            self._reply(client, Status.ERROR, payload=b"max_items must be >= 1")
            return
        get = ParkedGet(hosted, client, request.max_items)
        client.parked = get
        hosted.park(get)
        self._serve_waiters(hosted)
        if get.done:
            return
        if request.wait <= 0:
            self._get_timed_out(get)
        else:
            get.timer = self._schedule(request.wait, lambda: self._get_timed_out(get))

    def _reply(self, client: _Client, status: Status, *, count: int = 0, qsize: int = 0, payload: bytes = b"") -> bool:
        """Send the answer to the client's latest request (and remember it for a re-send); False if it is gone.

        When the request named a producer stream whose new state waits for the end of this
        burst, the state goes first, in the same ZeroMQ message: the client has the stream's
        acknowledgement and credit when its reply comes, and the producer's sender thread is not
        woken for it (a process that puts and gets in turn then sends each put itself).
        """
        client.reply = encode_reply(
            self._signer, status, client.client_id, client.seq, count=count, qsize=qsize, payload=payload
        )
        stream = self._to_tell.pop(client.stream, None) if self._to_tell else None
        if stream is None:
            return self._send(client.identity, client.reply)
        if self._send(client.identity, client.reply, self._state(stream)):
            # Told: no longer held either (`_tell_streams`, which clears `_held`, runs only while
            # something is left to tell; a stale entry would keep the poll at `HOLD_MS`).
            self._held.pop(stream.stream_id, None)
            return True
        self._to_tell[stream.stream_id] = stream  # for its sender thread, at the end of the burst
        return False

    def _answer_get(self, get: ParkedGet, items: list[Any]) -> None:
        """Send a parked get the items it took; they stay unconfirmed until the consumer confirms them."""
        get.done = True
        self._cancel(get.timer)
        client, hosted = get.client, get.queue
        client.parked = None
        try:
            payload = dumps_items(items)
        except Exception as exc:
            self._counters["errors"] += 1
            payload, items = self._pickle_good_part(hosted, items, exc)
            if not items:
                self._reply(client, Status.ERROR, payload=payload)
                return
        # Unconfirmed from before the reply leaves, so nobody sees the items in neither place.
        unconfirmed = _Unconfirmed(hosted, items)
        unconfirmed.timer = self._schedule(client.lease, lambda: self._lease_expired(client, unconfirmed))
        client.unconfirmed = unconfirmed
        if not self._reply(client, Status.OK, count=len(items), qsize=hosted.qsize(), payload=payload):
            client.unconfirmed = None  # the consumer is gone: the items go straight back
            self._cancel(unconfirmed.timer)
            self._give_back(client, hosted, items)

    def _pickle_good_part(self, hosted: HostedQueue, items: list[Any], exc: Exception) -> tuple[bytes, list[Any]]:
        """For items a get took that will not pickle together: the payload of those before the
        first one at fault, and those items; the rest go back to the front of the queue, in order.

        With no such part (the first item is at fault), the payload is the error text for the
        reply and the items are []. The item at fault stays first on the queue, where the next
        remote get reports it again and a local consumer can still take it: nothing is lost.
        """
        bad: int | None = None  # the index of the first item that will not pickle alone
        problem = repr(exc)
        for index, item in enumerate(items):
            try:
                dumps_items([item])
            except Exception as item_exc:
                bad, problem = index, repr(item_exc)
                break
        payload = b""
        if bad:
            try:
                payload = dumps_items(items[:bad])
            except Exception:
                bad = None  # those before it fail only together: send none
        good = items[:bad] if bad else []
        hosted.restore(items[len(good):])
        what = "the items at the front of the queue" if bad is None else f"item {bad + 1} of the {len(items)} taken"
        log.warning(
            "RPC queue server: cannot pickle %s for a get (%s); %d item(s) before it sent, the rest left queued",
            what, problem, len(good),
        )
        if good:
            return payload, good
        return f"the server cannot pickle {what} (left on the queue): {problem}".encode(), []

    def _get_timed_out(self, get: ParkedGet) -> None:
        get.done = True
        get.client.parked = None
        get.queue.unpark(get)
        self._reply(get.client, Status.EMPTY, qsize=get.queue.qsize())

    def _confirm(self, client: _Client) -> None:
        unconfirmed, client.unconfirmed = client.unconfirmed, None
        if unconfirmed is not None:
            self._cancel(unconfirmed.timer)

    def _lease_expired(self, client: _Client, unconfirmed: _Unconfirmed) -> None:
        if client.unconfirmed is unconfirmed:
            client.unconfirmed = None
            self._counters["lease_expired"] += 1
            self._give_back(client, unconfirmed.queue, unconfirmed.items)
            self._serve_waiters(unconfirmed.queue)

    def _give_back(self, client: _Client, hosted: HostedQueue, items: list[Any]) -> None:
        """Return a get's items to the front of the queue; a copy of that get is told to ask again.

        Called while the queue's waiters are being served, the loop that is
        serving them hands the items on to the next parked get.
        """
        hosted.restore(items)
        self._counters["returned"] += len(items)
        client.reply = encode_reply(self._signer, Status.RETRY, client.client_id, client.seq, qsize=hosted.qsize())

    def _abandon(self, client: _Client) -> None:
        """Drop the client's parked get when it sends a newer request.

        The client only moves on after giving up on the old request (its
        timeout passed, it raised `ConnectionError`), so nobody waits for that
        answer: the get must not take items nobody will read, and its late
        reply must not be taken for the answer to the newer request.
        """
        get, client.parked = client.parked, None
        if get is None or get.done:
            return
        get.done = True
        get.queue.unpark(get)
        self._cancel(get.timer)
        self._counters["abandoned"] += 1

    def _evict_clients(self) -> None:
        while len(self._clients) > self.max_clients:
            idle = next(
                (cid for cid, c in self._clients.items() if c.reply is not None and c.unconfirmed is None), None
            )
            if idle is None:
                return
            del self._clients[idle]
            self._counters["evicted_clients"] += 1

    # ------------------------------------------------------------------ producers: streams
    def _on_stream(self, identity: bytes, message: Request) -> None:
        """A producer's DATA or CREDIT message.

        DATA may come from any socket of the producer's process (a caller
        sends its own first message after a pause); positions say what is
        new. CREDIT comes from the producer's sender thread, and only a CREDIT
        newer than the stream's last one moves where the stream's state goes.
        A demand (`wanted`) counts only from the newest message.
        """
        stream = self._streams.get(message.client_id)
        if stream is None:
            if message.op is Op.DATA or message.incarnation not in (0, self._incarnation):
                # Data this server granted no credit for, or a stream another server (before a
                # restart) knew: its unacknowledged items may be lost or queued there. Tell the
                # producer; queue nothing.
                self._counters["unknown_streams"] += 1
                self._send(identity, encode_reply(
                    self._signer, Status.RESET, message.client_id, message.seq, incarnation=self._incarnation
                ))
                return
            hosted = self.attach_queue(message.queue_id, message.maxsize)
            stream = Stream(
                message.client_id, hosted, identity, message.position, message.weight, message.weight, message.epoch,
                lease=message.lease or DEFAULT_TIMEOUT, last_heard=time.monotonic(),
            )
            self._streams[message.client_id] = stream
            hosted.producers[stream.stream_id] = stream
            self._evict_streams()  # never this one: it was just heard
        else:
            if message.op is Op.CREDIT and message.seq <= stream.credit_seq:
                self._counters["stale"] += 1
                return
            self._streams.move_to_end(message.client_id)
            hosted = stream.queue
        if message.op is Op.CREDIT:
            stream.identity = identity
            stream.credit_seq = message.seq
        newest = message.seq > stream.seq
        stream.seq = max(stream.seq, message.seq)
        stream.lease = message.lease or DEFAULT_TIMEOUT
        stream.last_heard = time.monotonic()
        self._counters["requests"] += 1
        if stream.recalled:
            stream.recalled = False
            self._cancel(stream.recall_timer)
        if message.epoch > stream.epoch:
            # The producer gave back its unused credit: it keeps `base`, what it had sent by then.
            stream.epoch = message.epoch
            hosted.set_limit(stream, message.base)
        if message.position == stream.next_position and message.weight > stream.arrived:
            # Records of items the server skipped count as arrived: their room is free again.
            hosted.count_arrived(stream, message.weight)
        if message.op is Op.DATA:
            self._accept(stream, message)
        if newest and message.epoch == stream.epoch:
            stream.wanted = message.wanted
        if stream.wanted > stream.limit:
            hosted.starve(stream)
        self._to_tell[stream.stream_id] = stream
        self._serve_waiters(hosted)
        if hosted.starved:
            self._recall(hosted)

    def _accept(self, stream: Stream, message: Request) -> None:
        """Queue the items of a DATA message that are new (a re-sent message may overlap what arrived)."""
        first, count = message.position, message.max_items
        if first > stream.next_position or first + count <= stream.next_position:
            # A gap (an earlier message was lost: the producer sends it again) or all seen already.
            self._counters["duplicates"] += count if first < stream.next_position else 0
            return
        if not message.payload:
            stream.next_position = first + count  # items the producer could not send (it reports them)
            return
        try:
            items = loads_items(message.payload)
            if len(items) != count:
                raise ValueError(f"{len(items)} items, the header says {count}")
        except Exception as exc:
            self._counters["bad_payload"] += 1
            stream.error = f"the server cannot unpickle a batch of {count} item(s): {exc!r}"
            stream.next_position = first + count
            return
        skip = stream.next_position - first
        self._counters["duplicates"] += skip
        stream.next_position = first + count
        stream.queue.arrive(stream, items[skip:] if skip else items)

    def _recall(self, hosted: HostedQueue) -> None:
        """Ask producers that hold unused credit for it back, because others wait for credit.

        Every producer but the first in line for credit is asked: one that is
        itself waiting for more (an item heavier than its credit) gives back
        what it holds too and keeps its place, so two of them never sit on
        halves of the room each needs. A producer that is gone is found out
        when its state cannot be sent; one that stays silent past its lease
        loses the credit anyway.
        """
        first = hosted.starved[0]
        for stream in hosted.producers.values():
            if stream.unused and stream is not first and not stream.recalled:
                stream.recalled = True
                stream.recall_timer = self._schedule(stream.lease, functools.partial(self._revoke, stream))
                self._to_tell[stream.stream_id] = stream
                self._counters["recalls"] += 1

    def _revoke(self, stream: Stream) -> None:
        """Take back a stream's unused credit (its producer is gone, or did not answer a recall)."""
        stream.recalled = False
        self._cancel(stream.recall_timer)
        if stream.unused:
            self._counters["revoked"] += 1
            stream.queue.set_limit(stream, stream.arrived)
            self._serve_waiters(stream.queue)

    def _tell_streams(self) -> None:
        """Send every stream touched in this burst its state, to its sender thread.

        The state of a stream whose process also gets from the queue waits for one more poll
        (at most `HOLD_MS`), once: a process that puts and then gets sends the two messages
        back to back, and they often arrive in two bursts; the state then goes with the get's
        reply (see `_reply`), where the caller that put is reading anyway, instead of waking the
        producer's sender thread.
        """
        streams, self._to_tell = self._to_tell, {}
        held, self._held = self._held, {}
        for stream in streams.values():
            if stream.gets_too and stream.stream_id not in held:
                self._held[stream.stream_id] = self._to_tell[stream.stream_id] = stream
                continue
            if not self._send(stream.identity, self._state(stream)):
                # The producer is gone: it wants nothing more, and its unused credit is free again.
                stream.wanted = stream.limit
                self._revoke(stream)

    def _state(self, stream: Stream) -> bytes:
        """A stream's state message: acknowledgement and credit in one (and an error, once)."""
        status, payload = Status.OK, b""
        if stream.error:
            status, payload, stream.error = Status.ERROR, stream.error.encode(), ""
        return encode_reply(
            self._signer, status, stream.stream_id, stream.seq,
            flags=FLAG_RECALL if stream.recalled else 0, count=stream.next_position - 1,
            limit=stream.limit, epoch=stream.epoch, incarnation=self._incarnation,
            qsize=stream.queue.qsize(), payload=payload,
        )

    def _evict_streams(self) -> None:
        """Forget the least recently heard streams beyond `max_clients`, among those safe to forget.

        Safe: no credit outstanding, none wanted, and silent for two leases,
        so the producer holds no unacknowledged items it could send again.
        """
        now = time.monotonic()
        while len(self._streams) > self.max_clients:
            idle = next(
                (sid for sid, s in self._streams.items()
                 if not s.unused and not s.starved and now - s.last_heard > 2 * s.lease),
                None,
            )
            if idle is None:
                return
            stream = self._streams.pop(idle)
            stream.queue.forget(stream)
            self._counters["evicted_clients"] += 1

    # ------------------------------------------------------------------ both
    def _serve_waiters(self, hosted: HostedQueue) -> None:
        hosted.serve_waiters(self._answer_get, self._granted)

    def _granted(self, stream: Stream) -> None:
        self._to_tell[stream.stream_id] = stream

    def _shutdown_waiters(self) -> None:
        for hosted in list(self._queues.values()):
            for get in list(hosted.parked_gets):
                get.done = True
                self._reply(get.client, Status.SHUTDOWN)
            for stream in hosted.producers.values():
                self._send(stream.identity, encode_reply(self._signer, Status.SHUTDOWN, stream.stream_id, stream.seq))
            hosted.parked_gets.clear()
            hosted.starved.clear()
            hosted.has_waiters = False

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._port is not None else "not started"
        return f"RPCQueueServer({self.host!r}, {state}, running={self.running})"
