"""What user code running inside the kernel can reach: its context, name, logger and services."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runtime.service.awaitable_future import AwaitableFuture


class RuntimeAccess:
    """`self.ctx`, `self.name`, `self.logger` and service calls, for functions and services alike.

    The runtime sets `ctx` before the first hook (`open()` / `setup()`) runs.
    """

    ctx: Any = None

    @property
    def name(self) -> str:
        """The running instance's name, e.g. `CountWords_1` or `service:lexicon`."""
        return self.ctx.name if self.ctx is not None else type(self).__name__

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the running instance."""
        return logging.getLogger(f"sage.kernel.user.{self.name}")

    def call_service(self, service_name: str, *args: Any, method: str = "process",
                     timeout: float | None = None, **kwargs: Any) -> Any:
        """Call a registered service and wait for its result.

        Blocks up to `timeout` seconds (the job's `service_timeout` when None)
        and raises `TimeoutError` then. The service's exception is re-raised
        here with its own type when it can be rebuilt, else as
        `ServiceCallError`. An unknown service or method raises at once.
        """
        return self.ctx.call_service(service_name, *args, method=method, timeout=timeout, **kwargs)

    def call_service_async(self, service_name: str, *args: Any, method: str = "process",
                           timeout: float | None = None, **kwargs: Any) -> AwaitableFuture[Any]:
        """Call a service without waiting; returns a `concurrent.futures.Future` that can also be awaited.

        `future.result()` blocks the thread; inside a coroutine (an async
        function's `execute`), `await future` suspends only the coroutine.
        The future fails with `TimeoutError` once `timeout` passes without an answer.
        """
        future: AwaitableFuture[Any] = self.ctx.call_service_async(service_name, *args, method=method, timeout=timeout,
                                                          **kwargs)
        return future
