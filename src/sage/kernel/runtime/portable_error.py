"""Exceptions that cross process boundaries without losing their type or traceback."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from ..errors import describe_error


class PortableError:
    """An exception packed to travel: the exception itself when it survives
    pickling (traceback stripped: traceback objects do not pickle), and always
    its type name, message and formatted traceback."""

    __slots__ = ("error", "type_name", "message", "traceback")

    def __init__(self, error: BaseException | None, type_name: str, message: str, traceback_text: str) -> None:
        self.error = error
        self.type_name = type_name
        self.message = message
        self.traceback = traceback_text

    @classmethod
    def capture(cls, exc: BaseException) -> PortableError:
        """Pack `exc`; keeps the object only if a pickle round trip rebuilds the same type."""
        error = exc if _round_trips(exc) else None
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = describe_error(exc).split(": ", 1)[1]
        return cls(error, f"{type(exc).__module__}.{type(exc).__qualname__}", message, text)

    def copy(self) -> PortableError:
        """The same error with an exception object of its own (a pickle round trip): for one failure that
        several callers receive, each of whom adds notes to what it raises."""
        error = cloudpickle.loads(cloudpickle.dumps(self.error)) if self.error is not None else None
        return PortableError(error, self.type_name, self.message, self.traceback)

    def rebuild(self, where: str, fallback: Callable[[str, str, str], BaseException]) -> BaseException:
        """The original exception with a note saying `where` it was raised and its remote traceback;
        when it could not travel, `fallback(type_name, message, traceback)`."""
        if self.error is not None:
            self.error.add_note(f"raised in {where}; remote traceback:\n{self.traceback}")
            return self.error
        return fallback(self.type_name, self.message, self.traceback)

    def __reduce__(self) -> tuple[Any, ...]:
        error = self.error.with_traceback(None) if self.error is not None else None
        return (PortableError, (error, self.type_name, self.message, self.traceback))


def _round_trips(exc: BaseException) -> bool:
    """True when `exc` pickles back to an object of its own type. An exception class defined in a
    script or a test travels by value (cloudpickle), as the functions that raise and catch it do;
    cloudpickle rebuilds it as the same class in every process that received it, so the caller's
    `except` clause still matches."""
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        try:
            if type(loads(dumps(exc))) is type(exc):
                return True
        except Exception:
            continue
    return False
