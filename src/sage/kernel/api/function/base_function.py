"""The base of every user function class."""

from __future__ import annotations

from ..runtime_access import RuntimeAccess


class BaseFunction(RuntimeAccess):
    """What every function instance has: `self.ctx`, `self.name`, `self.logger`, service calls.

    The runtime creates one instance per parallel task, sets `ctx` (the
    task's `TaskContext`) and calls `open()` before the first record and
    `close()` once at end of stream, before the stop signal goes downstream.
    Constructor arguments are the extra positional and keyword arguments
    given to the operator (`stream.map(MyFn, 10, scale=2)`).
    """

    def open(self) -> None:
        """Called once before the first record; override to acquire resources."""

    def close(self) -> None:
        """Called once at end of stream; may still emit (flatmap `collect`)."""
