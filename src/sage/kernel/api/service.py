"""Services: long-lived objects (a model, an index, a cache) that functions call by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import PipelineError
from ..runtime.service.batching import BATCH_MARK, BatchPolicy
from .runtime_access import RuntimeAccess

Method = TypeVar("Method", bound=Callable[..., Any])


class BaseService(RuntimeAccess):
    """Base class of user services.

    Register with `env.register_service(name, Cls, *args, max_concurrency=1,
    **kwargs)`; the runtime builds one instance with `Cls(*args, **kwargs)`,
    sets `self.ctx`, calls `setup()`, then answers requests by calling the
    requested method (`process` by default) until the job ends, and finally
    calls `cleanup()`. With `max_concurrency=1` the instance is never entered
    by two threads at once; with n > 1 up to n requests run concurrently.
    Services can call other services with `self.call_service(...)`.
    """

    def setup(self) -> None:
        """Called once before the first request."""

    def cleanup(self) -> None:
        """Called once when the job ends, after the last request."""


def batch(max_batch_size: int = 32, max_wait: float = 0.01) -> Callable[[Method], Method]:
    """Mark a service method as batched: callers send one item each, the method gets a list of them.

    ```
    class Embedder(BaseService):
        @batch(max_batch_size=32, max_wait=0.01)
        def process(self, texts):          # a list of what the callers sent
            return model.encode(texts)     # a list of as many results, in the same order
    ```

    Callers call it as any method, with exactly one argument
    (`call_service("embedder", text)`; another number of arguments is that
    caller's `TypeError`). The service groups requests from all callers, up
    to `max_batch_size` per call, waiting at most `max_wait` seconds after a
    batch's first request for more. Each caller gets its own result; an
    element of the returned list that is an exception is raised in its
    caller only; an exception raised by the method, or a returned list of
    the wrong length, fails every request of the batch. Works with
    `max_concurrency > 1` (several batches may then run at once) and on
    every backend. The method itself is unchanged: calling it directly
    still takes a list.

    Raises `PipelineError` for a `max_batch_size` that is not an int >= 1,
    a `max_wait` that is not a finite number >= 0, `@batch` used without
    parentheses, or on an `async def` (nothing would await it).
    """
    if callable(max_batch_size):
        raise PipelineError("@batch needs parentheses: @batch() or @batch(max_batch_size=..., max_wait=...)")
    try:
        policy = BatchPolicy(max_batch_size, max_wait)
    except ValueError as exc:
        raise PipelineError(f"@batch: {exc}") from None

    def mark(method: Method) -> Method:
        if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
            raise PipelineError(f"@batch: {method.__qualname__} is async, but a batched method runs on the "
                                f"service's threads and is called without awaiting; make it a plain method that "
                                f"takes a list and returns a list")
        setattr(method, BATCH_MARK, policy)
        return method

    return mark
