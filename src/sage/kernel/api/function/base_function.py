"""The base of every user function class."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any


class BaseFunction:
    """What every function instance has: `self.ctx`, `self.name`, `self.logger`.

    The runtime creates one instance per parallel task, sets `ctx` (the
    task's `TaskContext`) and calls `open()` before the first record and
    `close()` once at end of stream, before the stop signal goes downstream.
    Constructor arguments are the extra positional and keyword arguments
    given to the operator (`stream.map(MyFn, 10, scale=2)`).
    """

    ctx: Any = None

    @property
    def name(self) -> str:
        """The task instance's name, e.g. `CountWords_1`."""
        return self.ctx.name if self.ctx is not None else type(self).__name__

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the task instance."""
        return logging.getLogger(f"sage.kernel.task.{self.name}")

    def open(self) -> None:
        """Called once before the first record; override to acquire resources."""

    def close(self) -> None:
        """Called once at end of stream; may still emit (flatmap `collect`)."""

    def call_service(self, service_name: str, *args: Any, method: str = "process",
                     timeout: float | None = None, **kwargs: Any) -> Any:
        """Call a registered service and wait for its result.

        Blocks up to `timeout` seconds (the job's default when None) and raises
        `TimeoutError` then; the service's exception is re-raised here.
        """
        return self.ctx.call_service(service_name, *args, method=method, timeout=timeout, **kwargs)

    def call_service_async(self, service_name: str, *args: Any, method: str = "process",
                           timeout: float | None = None, **kwargs: Any) -> Future:
        """Call a registered service without waiting; returns a `concurrent.futures.Future`."""
        return self.ctx.call_service_async(service_name, *args, method=method, timeout=timeout, **kwargs)
