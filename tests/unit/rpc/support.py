"""Helpers for the RPC queue tests, and the code spawned child processes run (importable by them)."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor, WeightedItem
from sage.kernel.runtime.communication.router import Packet
from sage.kernel.runtime.communication.rpc import AUTHKEY_ENV, RPCQueueServer
from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import Op, decode_reply, encode_request, loads_items


def over_tcp(descriptor: RPCQueueDescriptor, **changes: Any) -> RPCQueueDescriptor:
    """The same queue through the server's other name, "localhost", which the process does not
    register for local attach: this process then reaches its own server over TCP."""
    config = {**descriptor.to_dict(), "host": "localhost", **changes}
    config.pop("queue_type")
    return RPCQueueDescriptor(**config)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a condition another thread or process brings about; fail at the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def raw_dealer(port: int, routing_id: bytes | None = None):
    """A bare DEALER socket connected to the server, to send hand-made or recorded messages.

    A `recv()` that gets nothing within 30 s raises `zmq.Again` instead of hanging the test.
    """
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 30_000
    if routing_id is not None:
        sock.routing_id = routing_id
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


class Records(WeightedItem):
    """A batch item standing for `count` records."""

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count

    @property
    def weight(self) -> int:
        return self.count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Records) and (self.name, self.count) == (other.name, other.count)

    def __hash__(self) -> int:
        return hash((self.name, self.count))

    def __repr__(self) -> str:
        return f"Records({self.name!r}, {self.count})"


class TcpCutter:
    """A TCP forwarder on 127.0.0.1 in front of a server, whose traffic a test can drop and cut.

    `drop_to_server` / `drop_to_client`: while set, bytes going that way are
    read and thrown away. `cut()` closes every connection at once (both
    sides), dropping what is buffered, and stops dropping; ZeroMQ peers then
    reconnect through the forwarder, which keeps listening.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.drop_to_server = threading.Event()
        self.drop_to_client = threading.Event()
        self.dropped = {"to_server": 0, "to_client": 0}
        self.connections = 0
        self._peer: dict[socket.socket, socket.socket] = {}
        self._to_server: set[socket.socket] = set()
        self._cut = threading.Event()
        self._cut_done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cut(self, timeout: float = 10.0) -> None:
        """Close every open connection and stop dropping; returns once done."""
        self._cut_done.clear()
        self._cut.set()
        assert self._cut_done.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _close_all(self) -> None:
        for sock in list(self._peer):
            sock.close()
        self._peer.clear()
        self._to_server.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._cut.is_set():
                self._close_all()
                self.drop_to_server.clear()
                self.drop_to_client.clear()
                self._cut.clear()
                self._cut_done.set()
            readable, _, _ = select.select([self._listener, *self._peer], [], [], 0.02)
            for sock in readable:
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    server = socket.create_connection(("127.0.0.1", self.target_port))
                    self._peer[client], self._peer[server] = server, client
                    self._to_server.add(client)
                    self.connections += 1
                    continue
                if sock not in self._peer:
                    continue  # closed by its peer earlier in this round
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    data = b""
                peer = self._peer[sock]
                if not data:
                    for end in (sock, peer):
                        end.close()
                        self._peer.pop(end, None)
                        self._to_server.discard(end)
                    continue
                direction = "to_server" if sock in self._to_server else "to_client"
                if (self.drop_to_server if direction == "to_server" else self.drop_to_client).is_set():
                    self.dropped[direction] += len(data)
                else:
                    peer.sendall(data)
        self._close_all()


# ---------------------------------------------------------------------- child processes
def serve(port: int, queue_ids: list[str], maxsize: int, address, stop) -> None:
    """Run a server with `queue_ids` until `stop` is set; report the port on `address`."""
    with RPCQueueServer(port=port) as server:
        for queue_id in queue_ids:
            server.create_queue(queue_id, maxsize)
        address.put(server.port)
        stop.wait(60)


def produce(descriptor: RPCQueueDescriptor, producer: int, count: int, batch: int) -> None:
    """Put Packets whose payload is (producer, n) for n in range(count), in batches; then flush."""
    for first in range(0, count, batch):
        descriptor.put_many([Packet((producer, n)) for n in range(first, min(count, first + batch))])
    descriptor.flush()


def put_then_signal(descriptor: RPCQueueDescriptor, items: list[Any], done) -> None:
    """Blocking put_many of `items`, flush, then set `done`."""
    descriptor.put_many(items)
    descriptor.flush()
    done.set()


def put_flush_and_hold(descriptor: RPCQueueDescriptor, items: list[Any], flushed) -> None:
    """Put `items` one by one, flush, set `flushed`, then wait to be killed (holding its credit)."""
    for item in items:
        descriptor.put(item)
    descriptor.flush()
    flushed.set()
    threading.Event().wait(120)


def get_and_report(descriptor: RPCQueueDescriptor, count: int, results) -> None:
    """Get `count` items with get/get_many mixed, and send them back on `results`."""
    items = [descriptor.get(timeout=10)]
    while len(items) < count:
        items.extend(descriptor.get_many(count - len(items), timeout=10))
    results.put(items)


def get_forever(descriptor: RPCQueueDescriptor, results) -> None:
    """One blocking get_many (parked on the server until items come); report what it got."""
    results.put(descriptor.get_many(100))


def take_without_confirming(port: int, queue_id: str, max_items: int, lease: float, results) -> None:
    """Take items with one raw GET, report them, and never confirm: then wait to be killed."""
    signer = Signer(os.environ[AUTHKEY_ENV].encode())
    client_id = os.urandom(16)
    sock = raw_dealer(port)
    sock.send(encode_request(signer, Op.GET, client_id, 1, queue_id, wait=30.0, max_items=max_items, lease=lease))
    reply = decode_reply(signer, [sock.recv()])
    results.put(loads_items(reply.payload))
    threading.Event().wait(120)
