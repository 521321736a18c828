"""Function classes that wrap plain callables (lambdas, functions, bound methods)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .async_function import AsyncFlatMapFunction, AsyncMapFunction
from .source_function import SourceFunction
from .transform_function import FilterFunction, FlatMapFunction, KeyByFunction, MapFunction, SinkFunction


class _CallableMixin:
    """Makes the wrapped callable the instance's `execute`, so calling it costs no extra frame."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        self.execute = fn


class CallableSource(_CallableMixin, SourceFunction):
    """A source from a zero-argument callable (record, None = nothing now, StopSignal = end)."""


class CallableMap(_CallableMixin, MapFunction):
    """A map from a one-argument callable."""


class CallableAsyncMap(_CallableMixin, AsyncMapFunction):
    """An async map from a coroutine function."""


class CallableAsyncFlatMap(_CallableMixin, AsyncFlatMapFunction):
    """An async flatmap from an async generator function."""


class CallableFilter(_CallableMixin, FilterFunction):
    """A filter from a predicate."""


class CallableFlatMap(_CallableMixin, FlatMapFunction):
    """A flatmap from a callable returning an iterable (or None)."""


class CallableKeyBy(_CallableMixin, KeyByFunction):
    """A key selector from a callable."""


class CallableSink(_CallableMixin, SinkFunction):
    """A sink from a one-argument callable (e.g. `print`, `list.append`)."""


def callable_display_name(fn: Callable[..., Any]) -> str | None:
    """The callable's own name, or None for lambdas and nameless callables."""
    name = getattr(fn, "__name__", None)
    return None if not name or name == "<lambda>" else name
