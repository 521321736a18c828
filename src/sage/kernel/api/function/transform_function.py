"""Functions that transform or consume one stream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base_function import BaseFunction


class MapFunction(BaseFunction):
    """One record in, one record out: `execute(record) -> record`."""

    def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute(data) must return the mapped record")


class FilterFunction(BaseFunction):
    """`execute(record) -> bool`: records for which it is true go on."""

    def execute(self, data: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__}.execute(data) must return True to keep the record")


class FlatMapFunction(BaseFunction):
    """One record in, zero or more out: return an iterable, or call `self.collect(x)`, or both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._collected: list[Any] = []

    def collect(self, data: Any) -> None:
        """Emit `data` downstream (after the current `execute` returns)."""
        try:
            self._collected.append(data)
        except AttributeError:  # a subclass __init__ that did not call super().__init__()
            self._collected = [data]

    def execute(self, data: Any) -> Iterable[Any] | None:
        raise NotImplementedError(f"{type(self).__name__}.execute(data) must return an iterable or use collect()")


class KeyByFunction(BaseFunction):
    """`execute(record) -> key`: the key that routes the record (str, bytes, int, bool, float, None or tuples)."""

    def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute(data) must return the record's key")


class SinkFunction(BaseFunction):
    """`execute(record)`: consumes records; returns nothing."""

    def execute(self, data: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}.execute(data) must consume the record")


class PrintSink(SinkFunction):
    """Prints every record (with an optional prefix)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def execute(self, data: Any) -> None:
        print(f"{self.prefix}{data}" if self.prefix else data, flush=False)
