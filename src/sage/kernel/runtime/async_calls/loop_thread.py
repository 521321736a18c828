"""One asyncio event loop on a thread of its own, for one task instance."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..communication.errors import SendCancelled

CHECK_INTERVAL = 0.2
"""Seconds a thread waiting for the loop blocks before re-checking its cancel event."""

CLOSE_TIMEOUT = 5.0
"""Seconds `close()` gives cancelled coroutines (and threads of `asyncio.to_thread`) to end."""

T = TypeVar("T")

logger = logging.getLogger(__name__)


class LoopThread:
    """An event loop running on a daemon thread, started at construction.

    Other threads hand it work with `call_soon` (no waiting) or `run` (wait
    for a coroutine's result). `close()` cancels what still runs and ends
    the thread.

    A `KeyboardInterrupt` or `SystemExit` raised in any task on the loop
    (asyncio lets them out of `run_forever`) ends the loop: `failure` then
    holds it, and `on_failure(exc)` is called on the dying thread, so that
    whoever waits for the loop's work stops waiting.
    """

    def __init__(self, name: str, on_failure: Callable[[BaseException], None]) -> None:
        self.loop = asyncio.new_event_loop()
        self.failure: BaseException | None = None
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        try:
            self.loop.run_forever()
        except BaseException as exc:  # KeyboardInterrupt or SystemExit out of a task: the loop is over
            self.failure = exc
            self._on_failure(exc)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run `callback(*args)` on the loop thread soon; returns at once."""
        self.loop.call_soon_threadsafe(callback, *args)

    def run(self, coroutine: Coroutine[Any, Any, T], cancel: threading.Event) -> T:
        """Run `coroutine` on the loop and block the calling thread until it ends; return its result.

        Raises what the coroutine raised, `SendCancelled` (after cancelling
        the coroutine) when `cancel` is set while it runs, or `RuntimeError`
        (caused by `failure`) when the loop ended under it.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        while not concurrent.futures.wait([future], CHECK_INTERVAL).done:
            if cancel.is_set():
                future.cancel()
                raise SendCancelled("cancelled while waiting for a coroutine on the event loop")
            if self.failure is not None:
                raise RuntimeError(f"{self._thread.name}: the event loop ended with {self.failure!r}") \
                    from self.failure
        return future.result()

    def close(self) -> None:
        """Cancel every task left on the loop, wait (up to `CLOSE_TIMEOUT`) for them to end, stop the loop
        and its thread. Never raises; a coroutine that refuses to end is logged and left behind."""
        if self.failure is not None:  # the thread ended: cancel what the loop held from here
            self._thread.join(CLOSE_TIMEOUT)
            try:
                self.loop.run_until_complete(_cancel_tasks(CLOSE_TIMEOUT))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())  # their finally blocks run
            except BaseException as exc:
                logger.warning("%s: cancelling after the loop ended: %r", self._thread.name, exc)
            self.loop.close()
            return
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_everything(), self.loop).result(CLOSE_TIMEOUT)
        except Exception as exc:  # TimeoutError: a coroutine swallowed its cancellation and goes on
            logger.warning("%s: coroutines still running after %.0f s of cancellation: %r",
                           self._thread.name, CLOSE_TIMEOUT, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_tasks(timeout: float | None = None) -> None:
    """Cancel every other task of the running loop and wait (up to `timeout`) for them to end."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


async def _cancel_everything() -> None:
    await _cancel_tasks()
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    # Threads of asyncio.to_thread cannot be interrupted: wait for them within the caller's timeout.
    await loop.shutdown_default_executor()
