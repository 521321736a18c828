"""Helpers for the RPC queue tests, and the code spawned child processes run (importable by them)."""

from __future__ import annotations

import time
from typing import Any, Callable

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.router import Packet
from sage.kernel.runtime.communication.rpc import RPCQueueServer


def over_tcp(descriptor: RPCQueueDescriptor, **changes: Any) -> RPCQueueDescriptor:
    """The same queue through the server's other name, "localhost", which the process does not
    register for local attach: this process then reaches its own server over TCP."""
    config = {**descriptor.to_dict(), "host": "localhost", **changes}
    config.pop("queue_type")
    return RPCQueueDescriptor(**config)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition another process brings about (no event crosses to here); fail at the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# ---------------------------------------------------------------------- child processes
def serve(port: int, queue_ids: list[str], maxsize: int, address, stop) -> None:
    """Run a server with `queue_ids` until `stop` is set; report the port on `address`."""
    with RPCQueueServer(port=port) as server:
        for queue_id in queue_ids:
            server.create_queue(queue_id, maxsize)
        address.put(server.port)
        stop.wait(60)


def produce(descriptor: RPCQueueDescriptor, producer: int, count: int, batch: int) -> None:
    """Put Packets whose payload is (producer, n) for n in range(count), in batches."""
    for first in range(0, count, batch):
        descriptor.put_many([Packet((producer, n)) for n in range(first, min(count, first + batch))])


def put_then_signal(descriptor: RPCQueueDescriptor, items: list[Any], done) -> None:
    """Blocking put_many of `items`, then set `done`."""
    descriptor.put_many(items)
    done.set()


def get_and_report(descriptor: RPCQueueDescriptor, count: int, results) -> None:
    """Get `count` items with get/get_many mixed, and send them back on `results`."""
    items = [descriptor.get(timeout=10)]
    while len(items) < count:
        items.extend(descriptor.get_many(count - len(items), timeout=10))
    results.put(items)
