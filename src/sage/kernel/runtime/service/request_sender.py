"""Service requests put on their queues by a thread of the caller's own, for callers that must not block."""

from __future__ import annotations

import collections
import functools
import itertools
import queue
import threading
import time
from collections.abc import Callable

from ..communication.errors import SendCancelled
from ..communication.queue_descriptor import BaseQueueDescriptor
from .protocol import ServiceRequest

PUT_WAIT = 0.2
"""Longest one put (or the idle thread) blocks before re-checking for close, cancellation and deadlines."""


class RequestSender:
    """Puts service requests on their request queues from a thread of its own, in the order handed over.

    A call made on an event loop must not block it: every other call of
    that loop would wait too. `send` returns at once; the thread (started by
    the first `send`) puts the requests as soon as their queue has room,
    each run of consecutive requests for one service in one `put_many`
    (one remote call on a remote transport). It retries a full queue until
    the first waiting request's deadline (`time.monotonic()`), then fails
    that request and goes on with the next. Every request that cannot be
    put (its deadline passed while the queue stayed full, the instance was
    cancelled, the transport failed) goes to `fail` with its error.

    `unsent` counts the requests handed over and not yet put or failed: a
    caller that puts directly while it is 0, and hands over otherwise, keeps
    its requests in the order it made them.
    """

    def __init__(self, name: str, queues: dict[str, BaseQueueDescriptor], cancel: threading.Event,
                 fail: Callable[[ServiceRequest, BaseException], None]) -> None:
        self._name = name
        self._queues = queues
        self._cancel = cancel
        self._fail = fail
        self._backlog: collections.deque[tuple[ServiceRequest, float]] = collections.deque()
        self._unsent = 0
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def unsent(self) -> int:
        """Requests handed over and not yet put nor failed."""
        return self._unsent

    def send(self, request: ServiceRequest, deadline: float) -> None:
        """Hand `request` over to be put by `deadline` (`time.monotonic()`); returns at once."""
        with self._changed:
            self._backlog.append((request, deadline))
            self._unsent += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=f"sage-requests-{self._name}")
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        """Stop putting: requests not yet put are dropped (their caller fails their calls on closing).
        Waits up to `2 * PUT_WAIT` for the thread to end."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(PUT_WAIT * 2)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._backlog and not self._closed:
                    self._changed.wait(PUT_WAIT)
                if self._closed:
                    return
                taken = list(self._backlog)
                self._backlog.clear()
            for service, run in itertools.groupby(taken, key=lambda entry: entry[0].service):
                self._put(service, list(run))
            with self._changed:
                self._unsent -= len(taken)

    def _put(self, service: str, entries: list[tuple[ServiceRequest, float]]) -> None:
        qd = self._queues[service]
        while entries:
            if self._cancel.is_set() or self._closed:
                self._fail_all(entries, lambda: SendCancelled(f"call to service {service!r} cancelled"))
                return
            remaining = entries[0][1] - time.monotonic()
            try:
                qd.put_many([request for request, _ in entries], timeout=min(max(remaining, 0.0), PUT_WAIT))
                return
            except queue.Full as full:  # BatchFull: its first `accepted` requests are in
                entries = entries[getattr(full, "accepted", 0):]
            except Exception as exc:  # the transport failed: these calls cannot be made
                self._fail_all(entries, functools.partial(_queue_failed, service, exc))
                return
            if remaining <= 0 and entries:
                request = entries.pop(0)[0]
                self._fail(request, TimeoutError(f"service {service!r} method {request.method!r}: "
                                                 f"request queue stayed full"))

    def _fail_all(self, entries: list[tuple[ServiceRequest, float]], error: Callable[[], BaseException]) -> None:
        """Fail every request of `entries`, each with its own exception (they are raised in different calls)."""
        for request, _ in entries:
            self._fail(request, error())


def _queue_failed(service: str, exc: Exception) -> ConnectionError:
    error = ConnectionError(f"service {service!r}: putting the request failed: {exc!r}")
    error.__cause__ = exc
    return error
