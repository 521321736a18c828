"""Service requests put on their queues by a thread of the caller's own, for callers that must not block."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable

from ..communication.errors import SendCancelled
from ..communication.queue_descriptor import BaseQueueDescriptor
from .protocol import ServiceRequest

IDLE_WAIT = 0.2
"""Longest the idle thread blocks before re-checking for close."""

PUT_WAIT = 0.01
"""Longest one put blocks on a full queue before the thread turns to the other services' lines (and re-checks
close, cancellation and deadlines): a full queue holds up the requests for the others at most this long."""


class RequestSender:
    """Puts service requests on their request queues from a thread of its own, in the order handed over.

    A call made on an event loop must not block it: every other call of
    that loop would wait too. `send` returns at once; the thread (started by
    the first `send`) puts the requests as soon as their queue has room,
    what waits for one service in one `put_many` (one remote call on a
    remote transport). Each service has its own line: a full queue holds up
    the requests for its own service, and those for the others at most
    `PUT_WAIT`, as the thread takes the lines with waiting requests in turns.
    A request whose queue stays full until its deadline (`time.monotonic()`)
    fails, and the next in its line goes on.

    Every request that cannot be put (its deadline passed while the queue
    stayed full, the instance was cancelled, the transport failed) goes to
    `fail` with its error; each one put goes to `sent`. A request whose
    caller no longer waits for it (`wanted(request)` false: the call timed
    out, or the caller closed) is dropped without being put.

    `unsent(service)` counts the requests handed over for `service` and not
    yet put, failed or dropped: a caller that puts directly while it is 0,
    and hands over otherwise, keeps its requests to each service in the
    order it made them.
    """

    def __init__(self, name: str, queues: dict[str, BaseQueueDescriptor], cancel: threading.Event,
                 wanted: Callable[[ServiceRequest], bool], sent: Callable[[ServiceRequest], None],
                 fail: Callable[[ServiceRequest, BaseException], None]) -> None:
        self._name = name
        self._queues = queues
        self._cancel = cancel
        self._wanted = wanted
        self._sent = sent
        self._fail = fail
        self._lines: dict[str, collections.deque[tuple[ServiceRequest, float]]] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def unsent(self, service: str) -> int:
        """Requests for `service` handed over and not yet put, failed nor dropped."""
        with self._changed:  # not while `_remove` rebuilds the line
            line = self._lines.get(service)
            return len(line) if line is not None else 0

    def send(self, request: ServiceRequest, deadline: float) -> None:
        """Hand `request` over to be put by `deadline` (`time.monotonic()`); returns at once.

        Raises `SendCancelled` once the sender is closed (the caller shut down).
        """
        with self._changed:
            if self._closed:
                raise SendCancelled(f"{self._name}: the service caller is closed")
            line = self._lines.get(request.service)
            if line is None:
                line = self._lines[request.service] = collections.deque()
            line.append((request, deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=f"sage-requests-{self._name}")
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        """Stop putting: requests not yet put are dropped (their caller fails their calls on closing).
        Waits up to `2 * IDLE_WAIT` for the thread to end."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(IDLE_WAIT * 2)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and not any(self._lines.values()):
                    self._changed.wait(IDLE_WAIT)
                if self._closed:
                    return
                waiting = [service for service, line in self._lines.items() if line]
            for service in waiting:
                self._serve(service)

    def _serve(self, service: str) -> None:
        """One turn of `service`'s line: put what waits in it, blocking at most `PUT_WAIT` on a full queue."""
        line = self._lines[service]
        with self._changed:
            entries = list(line)
        dropped = [entry for entry in entries if not self._wanted(entry[0])]
        if dropped:
            self._remove(line, dropped)
            entries = [entry for entry in entries if self._wanted(entry[0])]
        if not entries:
            return
        if self._cancel.is_set() or self._closed:
            self._remove(line, entries)
            for request, _ in entries:
                self._fail(request, SendCancelled(f"call to service {service!r} cancelled"))
            return
        remaining = entries[0][1] - time.monotonic()
        try:
            self._queues[service].put_many([request for request, _ in entries],
                                           timeout=min(max(remaining, 0.0), PUT_WAIT))
            accepted = len(entries)
        except queue.Full as full:  # BatchFull: its first `accepted` requests are in
            accepted = getattr(full, "accepted", 0)
        except Exception as exc:  # the transport failed: these calls cannot be made
            self._remove(line, entries)
            for request, _ in entries:
                self._fail(request, _queue_failed(service, exc))
            return
        self._remove(line, entries[:accepted])
        for request, _ in entries[:accepted]:
            self._sent(request)
        if accepted == 0 and remaining <= 0:  # the head's own deadline passed (the next ones get their turns)
            request = entries[0][0]
            self._remove(line, [entries[0]])
            self._fail(request, TimeoutError(f"service {service!r} method {request.method!r}: request queue "
                                             f"stayed full (the request was never sent)"))

    def _remove(self, line: collections.deque[tuple[ServiceRequest, float]],
                entries: list[tuple[ServiceRequest, float]]) -> None:
        """Take `entries` (requests of `line` this thread handled) out of `line`: they are no longer unsent."""
        if not entries:
            return
        gone = {id(entry) for entry in entries}
        with self._changed:
            kept = [entry for entry in line if id(entry) not in gone]
            line.clear()
            line.extend(kept)


def _queue_failed(service: str, exc: Exception) -> ConnectionError:
    error = ConnectionError(f"service {service!r}: putting the request failed: {exc!r}")
    error.__cause__ = exc
    return error

