"""A queue hosted by an RPC queue server, and the remote requests parked on it.

Local threads of the hosting process use a `HostedQueue` directly, as the
`BatchQueue` it is. Remote requests that cannot finish at once (a put on a
full queue, a get on an empty one) are parked here by the server's I/O thread
instead of blocking it; they finish when the queue changes or their wait ends.
A change made by a local thread wakes the I/O thread only while requests are
parked, so the local hot path costs one attribute read.
"""

from __future__ import annotations

import queue
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..queue_descriptor.base_queue_descriptor import BatchFull
from ..queue_descriptor.python_queue_descriptor import BatchQueue
from .protocol import Op


@dataclass(slots=True, eq=False)
class Parked:
    """A remote put or get waiting for room or for items.

    `client` is the server's record of who asked; `items`/`accepted` track a
    put's progress, `max_items` a get's limit; `deadline` is set once the
    request waits on a timer; `done` once it is answered.
    """

    queue: "HostedQueue"
    client: Any
    op: Op
    deadline: float | None = None
    items: list[Any] = field(default_factory=list)
    accepted: int = 0
    max_items: int = 0
    done: bool = False


Answer = Callable[[Parked, list[Any]], None]
"""Called once per finished request: the parked request and the items a get took."""


class HostedQueue(BatchQueue):
    """A bounded FIFO shared by local threads and remote clients of one server.

    `wake` is called after a local thread changed the queue while remote
    requests are parked on it; it must be cheap and thread-safe. The server's
    I/O thread uses `server_put_many`/`server_get_many`, which do not wake it.

    Race-free wake: the I/O thread sets `has_parked` before it retries a parked
    request, and a local thread reads it after its change, so either the retry
    sees the change or the local thread sees the flag.
    """

    server_put_many = BatchQueue.put_many
    server_get_many = BatchQueue.get_many

    def __init__(self, maxsize: int, wake: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._wake = wake
        self.parked_puts: deque[Parked] = deque()
        self.parked_gets: deque[Parked] = deque()
        self.has_parked = False

    # ------------------------------------------------------------------ local threads
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        try:
            super().put(item, block, timeout)
        finally:
            self._changed()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)
        finally:
            self._changed()

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        try:
            super().put_many(items, timeout)
        finally:
            self._changed()

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        try:
            return super().get_many(max_items, timeout)
        finally:
            self._changed()

    def _changed(self) -> None:
        if self.has_parked:
            self._wake()

    # ------------------------------------------------------------------ I/O thread only
    def park(self, request: Parked) -> None:
        """Queue a remote request behind the others of its kind (FIFO per queue)."""
        (self.parked_puts if request.op is Op.PUT else self.parked_gets).append(request)
        self.has_parked = True

    def unpark(self, request: Parked) -> None:
        """Remove a request that is still parked (its wait ended)."""
        (self.parked_puts if request.op is Op.PUT else self.parked_gets).remove(request)
        self.has_parked = bool(self.parked_puts or self.parked_gets)

    def serve_parked(self, answer: Answer) -> None:
        """Move items for parked requests until none can progress; `answer` each finished one.

        Puts and gets alternate: a get that frees room lets a parked put in,
        whose items may finish a parked get, and so on.
        """
        progress = True
        while progress:
            progress = False
            while self.parked_puts:
                put = self.parked_puts[0]
                try:
                    self.server_put_many(put.items[put.accepted :] if put.accepted else put.items, 0)
                except BatchFull as full:
                    put.accepted += full.accepted
                    progress = progress or full.accepted > 0
                    break
                put.accepted = len(put.items)
                self.parked_puts.popleft()
                answer(put, [])
                progress = True
            while self.parked_gets:
                get = self.parked_gets[0]
                try:
                    items = self.server_get_many(get.max_items, 0)
                except queue.Empty:
                    break
                self.parked_gets.popleft()
                answer(get, items)
                progress = True
        self.has_parked = bool(self.parked_puts or self.parked_gets)
