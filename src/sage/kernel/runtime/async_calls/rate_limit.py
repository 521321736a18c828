"""A rate limit for the calls of one event loop: attempts start at least 1/rate seconds apart."""

from __future__ import annotations

import asyncio


class RateLimiter:
    """At most `rate` attempts per second, over any span of time (no bursts).

    Callers take turns (first come, first served): each waits until
    `1 / rate` seconds after the previous caller really started, so a caller
    that woke late never lets the next ones catch up in a burst, and one
    cancelled while it waits gives up its turn. For one event loop (not
    thread-safe); the loop's clock is the time base.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = float("-inf")
        self._turn = asyncio.Lock()

    async def acquire(self) -> bool:
        """Wait for this caller's turn; True when it had to wait (the limit was reached).

        Raises `asyncio.CancelledError` when the waiting task is cancelled.
        """
        loop = asyncio.get_running_loop()
        async with self._turn:
            wait = self._next - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = loop.time() + self.interval
        return wait > 0
