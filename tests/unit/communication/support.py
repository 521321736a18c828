"""Helpers shared by the communication tests (plain functions, no fixtures).

Also imported as a top-level module by the PYTHONHASHSEED subprocess test, so
it imports nothing from the test package.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sage.kernel.runtime.communication import BaseRouter, Batch, Connection, Packet, PythonQueueDescriptor

KEYS: list[Any] = [f"user-{i}" for i in range(64)] + [0, "", False, None, 7, -3, 2.5, b"raw", ("a", 1), (("n",), None),
                                                     -0.0, 1.0, True, float("nan"), float("inf")]
"""Partition keys whose placement must not depend on the process or its hash seed."""


def records(items: list[Any]) -> list[Any]:
    """Queue items with every `Batch` expanded into its records as `Packet`s (control items kept)."""
    out: list[Any] = []
    for item in items:
        out.extend(item.packets() if isinstance(item, Batch) else [item])
    return out


def drain(descriptor: PythonQueueDescriptor) -> list[Any]:
    """Everything queued on `descriptor` now, oldest first, batches expanded (single-threaded use)."""
    items: list[Any] = []
    while not descriptor.empty():
        items.extend(descriptor.get_many(1024, timeout=0))
    return records(items)


def wait_until_parked(condition: threading.Condition, count: int = 1, timeout: float = 5.0) -> None:
    """Return once `count` threads wait on `condition`; AssertionError after `timeout`.

    A thread parked in `Condition.wait()` is in the condition's waiter list
    (`_waiters`, CPython's threading.Condition). Reading it under the lock is
    the one way to know a thread is blocked without sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        with condition:
            if len(condition._waiters) >= count:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} thread(s) never blocked on {condition!r}")
        time.sleep(0.001)


def first_access_from_threads(descriptor: Any, threads_n: int = 16) -> list[Any]:
    """Let `threads_n` threads touch `descriptor.queue_instance` at once; the instances they saw."""
    barrier = threading.Barrier(threads_n)
    seen: list[Any] = []

    def touch() -> None:
        barrier.wait(timeout=5)
        seen.append(descriptor.queue_instance)

    threads = [threading.Thread(target=touch) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(seen) == threads_n, "a thread never reached the queue"
    return seen


def route_keys(keys: list[Any], instances: int) -> list[int]:
    """Route one hash-keyed packet per key through a real router; the parallel index each reached."""
    queues = [PythonQueueDescriptor() for _ in range(instances)]
    router = BaseRouter({0: {i: Connection(0, i, f"t_{i}", q) for i, q in enumerate(queues)}}, {0: "hash"})
    for position, key in enumerate(keys):
        router.send(Packet(position, partition_key=key, partition_strategy="hash"))
    router.flush()
    placement = [-1] * len(keys)
    for index, q in enumerate(queues):
        for packet in drain(q):
            placement[packet.payload] = index
        q.close()
    return placement
