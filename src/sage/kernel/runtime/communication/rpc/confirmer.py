"""Confirmations of gets that no newer request confirmed: sent late, by one thread per process.

The server keeps a get's items until their consumer confirms it has them.
Any newer request of the same client confirms the previous reply, so a
consumer that keeps asking (a task loop, a service listener) sends no
confirmation messages at all. For one that stops asking (it works on what it
got, or it is done), this thread sends the confirmation `delay` seconds after
the reply, well inside the server's lease, unless a newer request came first.
At interpreter exit, pending confirmations go out at once.

A consumer that dies before its confirmation went out gets its last items
back on the queue, for the next consumer: they are never lost, and may be
seen twice.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import itertools
import os
import threading
import time
from typing import Any

import zmq

from .auth import Signer
from .protocol import Op, encode_request

WAIT_CAP = 1.0
"""Seconds the idle thread sleeps before it re-checks its state."""

_NOBLOCK = int(zmq.NOBLOCK)


class Confirmer:
    """Sends CONFIRM for replies whose client sent nothing newer within their delay.

    `channel` is a client's request channel with three attributes this class
    reads and writes: `unconfirmed` (the sequence number of its latest reply
    with items not confirmed yet, 0 for none: the client clears it when it
    sends a newer request), `received_at` (when that reply came) and
    `confirm_due` (whether this class holds a timer for the channel: at
    most one each). Thread-safe.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, str, Signer, str, Any, float]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._hurry = False
        self._sending = False

    def confirm_later(self, endpoint: str, signer: Signer, queue_id: str, channel: Any, delay: float) -> None:
        """Confirm the latest reply of `channel` `delay` seconds after it came, unless a newer request does."""
        with self._cond:
            if channel.confirm_due:
                return  # its timer will look at the latest reply when it fires
            channel.confirm_due = True
            self._schedule(channel.received_at + delay, endpoint, signer, queue_id, channel, delay)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rpc-confirmer", daemon=True)
                self._thread.start()

    def send_all_now(self, timeout: float) -> None:
        """Send every pending confirmation now; wait up to `timeout` seconds for the thread to do it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry = True
            self._cond.notify()
            while (self._due or self._sending) and self._thread is not None and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(min(remaining, WAIT_CAP))

    def _schedule(self, due: float, endpoint: str, signer: Signer, queue_id: str, channel: Any, delay: float) -> None:
        if not self._due or due < self._due[0][0]:
            self._cond.notify()
        heapq.heappush(self._due, (due, next(self._order), endpoint, signer, queue_id, channel, delay))

    def _run(self) -> None:
        sockets: dict[str, Any] = {}
        while True:
            with self._cond:
                now = time.monotonic()
                while not self._due or (self._due[0][0] > now and not self._hurry):
                    self._cond.wait(WAIT_CAP if not self._due else min(WAIT_CAP, self._due[0][0] - now))
                    now = time.monotonic()
                ready = []
                while self._due and (self._due[0][0] <= now or self._hurry):
                    _, _, endpoint, signer, queue_id, channel, delay = heapq.heappop(self._due)
                    seq = channel.unconfirmed
                    later = channel.received_at + delay
                    if seq and later > now and not self._hurry:
                        self._schedule(later, endpoint, signer, queue_id, channel, delay)  # a newer reply came
                        continue
                    channel.confirm_due = False
                    if seq:
                        ready.append((endpoint, encode_request(signer, Op.CONFIRM, channel.client_id, seq, queue_id)))
                        channel.unconfirmed = 0
                self._hurry = self._hurry and bool(self._due)
                self._sending = True
            self._send(sockets, ready)
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    @staticmethod
    def _send(sockets: dict[str, Any], ready: list[tuple[str, bytes]]) -> None:
        for endpoint, message in ready:
            sock: Any = sockets.get(endpoint)
            if sock is None:
                sock = sockets[endpoint] = zmq.Context.instance().socket(zmq.DEALER)
                sock.linger = 1000  # what is sent at exit gets out
                sock.connect(endpoint)
            # zmq.Again: not connected yet and its queue is full: the server's lease returns the items.
            with contextlib.suppress(zmq.Again):
                sock.send(message, _NOBLOCK)


class _ThisProcess:
    """This process's confirmer, made on first use; a forked child makes its own (its parent's
    thread does not run in it)."""

    confirmer: Confirmer | None = None
    lock = threading.Lock()

    @classmethod
    def forget_after_fork(cls) -> None:
        cls.confirmer, cls.lock = None, threading.Lock()


def confirmer() -> Confirmer:
    """This process's confirmer."""
    found = _ThisProcess.confirmer
    if found is None:
        with _ThisProcess.lock:
            if _ThisProcess.confirmer is None:
                _ThisProcess.confirmer = Confirmer()
            found = _ThisProcess.confirmer
    return found


def _send_pending_at_exit() -> None:
    if _ThisProcess.confirmer is not None:
        _ThisProcess.confirmer.send_all_now(timeout=2.0)


os.register_at_fork(after_in_child=_ThisProcess.forget_after_fork)
atexit.register(_send_pending_at_exit)
