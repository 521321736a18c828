"""Services: long-lived objects (a model, an index, a cache) that functions call by name."""

from __future__ import annotations

from .runtime_access import RuntimeAccess


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
