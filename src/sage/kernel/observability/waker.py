"""Waking the main thread from other threads and from Ctrl-C, without exceptions in the middle of drawing.

Python turns Ctrl-C into a `KeyboardInterrupt` raised wherever the main
thread happens to be, which may be halfway through redrawing the terminal.
`catch_ctrl_c` instead counts the presses in a signal handler that does
nothing but write a byte to a `Waker`'s socket, so the main loop sees them
at one place, and a `Waker.wait` in progress returns at once.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator


class Waker:
    """A wait that other threads and signal handlers can end early.

    `wake()` never blocks and is safe from any thread and from a signal
    handler (a write to a non-blocking socket; no lock). `wait(timeout)`
    blocks until a wake or the timeout, then clears pending wakes.
    `close()` releases the sockets.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def wake(self) -> None:
        # Full: a wake is pending already; closed: nobody waits.
        with contextlib.suppress(BlockingIOError, OSError):
            self._writer.send(b"\0")

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when woken (False at the timeout)."""
        readable, _, _ = select.select([self._reader], [], [], timeout)
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass
        return True

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


@contextlib.contextmanager
def catch_ctrl_c(on_press: Callable[[], None]) -> Iterator[bool]:
    """While active, Ctrl-C (SIGINT) calls `on_press()` instead of raising `KeyboardInterrupt`.

    `on_press` runs in the main thread between two bytecodes: it must not
    take locks (count and `Waker.wake()`, nothing more). Only the main thread
    can set a signal handler: elsewhere nothing changes and the context
    yields False. The previous handler comes back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: on_press())
    try:
        yield True
    finally:
        signal.signal(signal.SIGINT, previous)
