"""The messages of a service call: one request, one response, matched by id."""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ..communication.queue_descriptor import BaseQueueDescriptor


class ServiceRequest:
    """A call of `method` on service `service` with `args`/`kwargs`.

    `response_qd` is the caller's response queue as a descriptor (never a
    live queue), so the request works across processes. `deadline` is the
    wall-clock time (`time.time()`) after which nobody waits for the answer.
    """

    __slots__ = ("request_id", "service", "method", "args", "kwargs", "deadline", "response_qd", "caller")

    def __init__(self, request_id: str, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 deadline: float, response_qd: BaseQueueDescriptor, caller: str) -> None:
        self.request_id = request_id
        self.service = service
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.deadline = deadline
        self.response_qd = response_qd
        self.caller = caller

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServiceRequest, tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self) -> str:
        return f"ServiceRequest({self.service}.{self.method}, id={self.request_id}, caller={self.caller})"


class ServiceResponse:
    """The answer to one request: a value, or an error.

    On error, `error` is the exception object when it survives pickling (so
    the caller re-raises the same type), else None; `error_type`,
    `error_message` and `error_traceback` always describe it.
    """

    __slots__ = ("request_id", "ok", "value", "error", "error_type", "error_message", "error_traceback")

    def __init__(self, request_id: str, ok: bool, value: Any = None, error: BaseException | None = None,
                 error_type: str = "", error_message: str = "", error_traceback: str = "") -> None:
        self.request_id = request_id
        self.ok = ok
        self.value = value
        self.error = error
        self.error_type = error_type
        self.error_message = error_message
        self.error_traceback = error_traceback

    @classmethod
    def success(cls, request_id: str, value: Any) -> "ServiceResponse":
        return cls(request_id, True, value)

    @classmethod
    def failure(cls, request_id: str, exc: BaseException) -> "ServiceResponse":
        """An error response; keeps the exception only if it can be rebuilt from a pickle."""
        try:
            rebuilt = pickle.loads(pickle.dumps(exc))
            error = exc if type(rebuilt) is type(exc) else None
        except Exception:
            error = None
        return cls(request_id, False, error=error, error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                   error_message=str(exc),
                   error_traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def __reduce__(self) -> tuple[Any, ...]:
        # The traceback object itself never travels: the formatted text does.
        error = self.error.with_traceback(None) if self.error is not None else None
        return (ServiceResponse, (self.request_id, self.ok, self.value, error, self.error_type, self.error_message,
                                  self.error_traceback))


class ResponseQueues:
    """Answers requests, reusing one descriptor per caller response queue.

    Each request carries its caller's descriptor freshly unpickled when it
    crossed a process; putting through it directly would attach to the queue
    (a Ray actor lookup, a new socket) once per request. This keeps the first
    descriptor seen for each queue identity and its live attachment.
    Thread-safe (dict.setdefault is atomic).
    """

    def __init__(self) -> None:
        self._known: dict[BaseQueueDescriptor, BaseQueueDescriptor] = {}

    def send(self, request: ServiceRequest, response: ServiceResponse, timeout: float | None = None) -> None:
        """Put `response` on the request's response queue; blocks up to `timeout` (`queue.Full` then)."""
        descriptor = self._known.setdefault(request.response_qd, request.response_qd)
        descriptor.put(response, timeout=timeout)
