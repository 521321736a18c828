"""What `map_async` and `flatmap_async` check before they add their operator: the function and the settings."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ..errors import PipelineError
from ..runtime.async_calls.policy import CallPolicy
from .function.async_function import AsyncFlatMapFunction, AsyncMapFunction
from .function.callable_function import callable_display_name


def _label(kind: str, function: Any) -> str:
    if isinstance(function, type):
        return function.__name__
    return callable_display_name(function) or kind


def check_async_function(kind: str, function: Any) -> None:
    """Raise `PipelineError` naming the operator unless `function` suits `kind`.

    "map_async" takes a coroutine function (`async def`, or an object whose
    `__call__` is one) or an `AsyncMapFunction` subclass defining `async def
    execute`; "flatmap_async" an async generator function (`async def` with
    `yield`) or an `AsyncFlatMapFunction` subclass whose `execute` is one.
    Anything else that is not callable is left to `resolve_function`, which
    says what the operator accepts.
    """
    label = _label(kind, function)
    base = AsyncMapFunction if kind == "map_async" else AsyncFlatMapFunction
    if isinstance(function, type):
        if not issubclass(function, base):
            return
        if function.execute is base.execute:
            raise PipelineError(f"{kind} operator {label}: the class does not define execute")
        candidate = function.execute
    elif inspect.isroutine(function) or isinstance(function, functools.partial):
        candidate = function
    elif callable(function):
        candidate = function.__call__
    else:
        return
    if kind == "map_async" and not inspect.iscoroutinefunction(candidate):
        hint = ("it is an async generator function: use flatmap_async" if inspect.isasyncgenfunction(candidate)
                else "use map() for a plain function")
        raise PipelineError(f"{kind} operator {label}: expected a coroutine function (async def), "
                            f"got {_what(function)}; {hint}")
    if kind == "flatmap_async" and not inspect.isasyncgenfunction(candidate):
        hint = ("it is a coroutine function: use map_async for one result per record"
                if inspect.iscoroutinefunction(candidate) else "use flatmap() for a plain function")
        raise PipelineError(f"{kind} operator {label}: expected an async generator function (async def with "
                            f"yield), got {_what(function)}; {hint}")


def _what(function: Any) -> str:
    return f"{function.__name__}.execute" if isinstance(function, type) else repr(function)


def call_policy(kind: str, function: Any, **settings: Any) -> CallPolicy:
    """The operator's `CallPolicy`; raises `PipelineError` naming the operator and the bad setting."""
    try:
        return CallPolicy(**settings)
    except ValueError as exc:
        raise PipelineError(f"{kind} operator {_label(kind, function)}: {exc}") from None
