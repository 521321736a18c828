"""A `concurrent.futures.Future` that a coroutine can also await."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class AwaitableFuture(Future[T]):
    """A `concurrent.futures.Future` (`result()`, `add_done_callback`, ... as usual) that `await` also takes.

    Awaiting it inside a running event loop suspends the coroutine, not the
    thread, until the future resolves, then returns its value or raises its
    exception. Cancelling the awaiting task cancels the future.
    """

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()
