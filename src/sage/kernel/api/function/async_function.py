"""Functions whose calls wait on something else (a model server, an HTTP API): coroutines and async generators.

An operator runs many calls of one instance at once on that instance's
event loop (`map_async`, `flatmap_async`): while one call waits for its
answer, the others go on. `open()` and `close()` may be plain methods or
`async def`; async ones run on the instance's event loop, which is where an
asyncio client (one HTTP connection pool per instance) must be created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .base_function import BaseFunction


class AsyncMapFunction(BaseFunction):
    """One record in, one record out, by a coroutine: `async def execute(record) -> record`."""

    async def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define `async def execute(self, data)`")


class AsyncFlatMapFunction(BaseFunction):
    """One record in, zero or more out, as they come: `async def execute(record)` with `yield` in it."""

    def execute(self, data: Any) -> AsyncIterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define `async def execute(self, data)` that yields")
