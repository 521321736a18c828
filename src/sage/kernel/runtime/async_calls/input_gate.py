"""The input of a task with calls in flight: read ahead on a helper thread, so that the task thread can
wait for input and for finished calls at once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

READ_WAIT = 0.2
"""Seconds one read of the input queue blocks before the reader re-checks whether it should end."""


class InputGate:
    """Stands in for the input queue's `get_many` in the task loop.

    A reader thread (started by the first `get_many`) takes items from the
    input queue, one `get_many(size)` at a time, and holds what it took
    until the task thread asks: at most one read's worth waits here, so the
    input stays bounded and backpressure works as with a plain queue (a task
    thread that takes nothing, because its operator is full, stops the
    reader). The task thread waits on `wakeup`, which finished calls notify
    too (`has_news`).
    """

    def __init__(self, read: Callable[[int, float], list[Any]], wakeup: threading.Condition,
                 has_news: Callable[[], bool], name: str) -> None:
        self._read = read
        self._wakeup = wakeup
        self._has_news = has_news
        self._name = name
        self._items: list[Any] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._reader: threading.Thread | None = None

    def get_many(self, size: int, timeout: float) -> list[Any]:
        """Items the reader took from the input queue, waiting up to `timeout` for them.

        Returns early, raising `queue.Empty`, when calls have news for the
        task thread (or after `timeout` with nothing read). Raises the
        error the input queue raised (a failed transport).
        """
        with self._wakeup:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_ahead, args=(size,), daemon=True,
                                                name=f"sage-input-{self._name}")
                self._reader.start()
            if timeout > 0:
                self._wakeup.wait_for(
                    lambda: self._items is not None or self._error is not None or self._has_news(), timeout)
            if self._error is not None:
                raise self._error
            items, self._items = self._items, None
            if items is None:
                raise queue.Empty
            self._wakeup.notify_all()  # the reader may read again
            return items

    def close(self) -> None:
        """Let the reader end (within `READ_WAIT`); returns at once. What it reads after this is dropped."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify_all()

    def _read_ahead(self, size: int) -> None:
        wakeup = self._wakeup
        while True:
            with wakeup:
                while self._items is not None and not self._closed:
                    wakeup.wait(READ_WAIT)
                if self._closed:
                    return
            try:
                items = self._read(size, READ_WAIT)
            except queue.Empty:
                continue
            except BaseException as exc:  # a failed transport: the task thread raises it, as from its own get
                with wakeup:
                    self._error = exc
                    wakeup.notify_all()
                return
            with wakeup:
                self._items = items
                wakeup.notify_all()
