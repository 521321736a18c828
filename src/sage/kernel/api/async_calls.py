"""Build-time checks of async code: what `map_async` and `flatmap_async` accept (the function and the
settings), and async code given where nothing would await it (other operators, service methods)."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterator
from typing import Any

from ..errors import PipelineError
from ..runtime.async_calls.policy import CallPolicy
from .function.async_function import AsyncFlatMapFunction, AsyncMapFunction
from .function.callable_function import callable_display_name

_CALLED_METHODS = re.compile(r"execute|open|close|map\d+")
"""The methods of a function class that a synchronous operator calls (`map0`, `map1`... of a comap)."""


def operator_label(kind: str, function: Any) -> str:
    """How errors name an operator: its kind and its function's name ("map_async operator fetch"), or the
    kind alone for a nameless callable (a lambda)."""
    name = function.__name__ if isinstance(function, type) else callable_display_name(function)
    return f"{kind} operator {name}" if name else f"{kind} operator"


def check_async_function(kind: str, function: Any) -> None:
    """Raise `PipelineError` naming the operator unless `function` suits `kind`.

    "map_async" takes a coroutine function (`async def`, or an object whose
    `__call__` is one) or an `AsyncMapFunction` subclass defining `async def
    execute`; "flatmap_async" an async generator function (`async def` with
    `yield`) or an `AsyncFlatMapFunction` subclass whose `execute` is one.
    Anything else that is not callable is left to `resolve_function`, which
    says what the operator accepts.
    """
    label = operator_label(kind, function)
    base = AsyncMapFunction if kind == "map_async" else AsyncFlatMapFunction
    if isinstance(function, type):
        if not issubclass(function, base):
            return
        if function.execute is base.execute:
            raise PipelineError(f"{label}: the class does not define execute")
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
        raise PipelineError(f"{label}: expected a coroutine function (async def), got {_what(function)}; {hint}")
    if kind == "flatmap_async" and not inspect.isasyncgenfunction(candidate):
        hint = ("it is a coroutine function: use map_async for one result per record"
                if inspect.iscoroutinefunction(candidate) else "use flatmap() for a plain function")
        raise PipelineError(f"{label}: expected an async generator function (async def with yield), "
                            f"got {_what(function)}; {hint}")


def check_not_async(kind: str, function: Any) -> None:
    """Raise `PipelineError` naming the operator when `function`, given to an operator that does not await
    (map, filter, flatmap, keyby, sink, comap, join, a source), is async: a coroutine or async generator
    function, or a function class whose `execute`, `open`, `close` (or a comap's `mapN`) is one. Such code
    would never run: the operator would get a coroutine object and drop it, or pass it on as a record."""
    for what, target in _called(function):
        if inspect.isasyncgenfunction(target):
            kind_of = "an async generator function"
        elif inspect.iscoroutinefunction(target):
            kind_of = "a coroutine function (async def)"
        else:
            continue
        raise PipelineError(f"{operator_label(kind, function)}: {what} is {kind_of}, which {kind} calls without "
                            f"awaiting; {_instead(kind, what, target)}")


def check_service_methods(name: str, service_class: type) -> None:
    """Raise `PipelineError` when a method of a service class is async: the service's threads call its
    methods (and `setup`/`cleanup`) without awaiting, so its callers would get a coroutine object."""
    for method in sorted(dir(service_class)):
        target = getattr(service_class, method, None)
        if method.startswith("_") or not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):
            continue
        raise PipelineError(f"register_service {name!r}: {service_class.__name__}.{method} is async, but a "
                            f"service's methods run on its threads and are called without awaiting; make it a "
                            f"plain method (callers may await call_service_async from their own async code)")


def call_policy(kind: str, function: Any, **settings: Any) -> CallPolicy:
    """The operator's `CallPolicy`; raises `PipelineError` naming the operator and the bad setting."""
    try:
        return CallPolicy(**settings)
    except ValueError as exc:
        raise PipelineError(f"{operator_label(kind, function)}: {exc}") from None


def _what(function: Any) -> str:
    return f"{function.__name__}.execute" if isinstance(function, type) else repr(function)


def _called(function: Any) -> Iterator[tuple[str, Any]]:
    """(how to name it, the function) for what an operator would call of `function`."""
    if isinstance(function, type):
        for method in sorted(dir(function)):
            if _CALLED_METHODS.fullmatch(method):
                yield f"{function.__name__}.{method}", getattr(function, method)
    elif inspect.isroutine(function) or isinstance(function, functools.partial):
        yield "it", function
    elif callable(function):
        yield f"{type(function).__name__}.__call__", function.__call__


def _instead(kind: str, what: str, target: Any) -> str:
    if what.endswith((".open", ".close")):
        return ("make it a plain method (async open and close belong to AsyncMapFunction and "
                "AsyncFlatMapFunction classes, for map_async and flatmap_async)")
    if inspect.isasyncgenfunction(target):
        return "use flatmap_async"
    if kind == "map":
        return "use map_async"
    if kind == "flatmap":
        return "use map_async (one result per record), or flatmap_async with an async generator"
    if kind in ("from_source", "from_batch"):
        return ("make it a plain function (with a synchronous client), and do the async work in a map_async "
                "after the source")
    return "make it a plain function, or await the async work in a map_async before this operator"
