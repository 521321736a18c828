"""The messages of a service call: one request, one response, matched by id."""

from __future__ import annotations

from typing import Any

from ..communication.queue_descriptor import BaseQueueDescriptor
from ..portable_error import PortableError


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
    """The answer to one request: a value (`ok`), or a `PortableError` (`failure`)
    that rebuilds the service's exception in the caller."""

    __slots__ = ("request_id", "ok", "value", "failure")

    def __init__(self, request_id: str, ok: bool, value: Any = None, failure: PortableError | None = None) -> None:
        self.request_id = request_id
        self.ok = ok
        self.value = value
        self.failure = failure

    @classmethod
    def success(cls, request_id: str, value: Any) -> ServiceResponse:
        return cls(request_id, True, value)

    @classmethod
    def failure_of(cls, request_id: str, exc: BaseException) -> ServiceResponse:
        """An error response carrying `exc` packed to travel."""
        return cls(request_id, False, failure=PortableError.capture(exc))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServiceResponse, (self.request_id, self.ok, self.value, self.failure))


class ResponseQueues:
    """Answers requests (and other messages to a queue a message carries), reusing one descriptor
    per queue.

    Each request carries its caller's descriptor freshly unpickled when it
    crossed a process; putting through it directly would attach to the queue
    (a Ray actor lookup, a new socket) once per request. This keeps the first
    descriptor seen for each queue identity and its live attachment.
    Hashing a descriptor's identity costs microseconds, so the kept
    descriptors are also found by object id: in one process every request
    of a caller carries the very same descriptor object. (A kept descriptor
    stays alive, so its id cannot be reused by another object.)
    Thread-safe (dict.get/setdefault are atomic).
    """

    def __init__(self) -> None:
        self._known: dict[BaseQueueDescriptor, BaseQueueDescriptor] = {}
        self._kept_by_id: dict[int, BaseQueueDescriptor] = {}

    def send(self, request: ServiceRequest, response: ServiceResponse, timeout: float | None = None) -> None:
        """Put `response` on the request's response queue; blocks up to `timeout` (`queue.Full` then)."""
        self.put(request.response_qd, response, timeout)

    def put(self, carried: BaseQueueDescriptor, item: Any, timeout: float | None = None) -> None:
        """Put `item` on the queue `carried` names, through the kept descriptor for it."""
        descriptor = self._kept_by_id.get(id(carried))
        if descriptor is None:
            descriptor = self._known.setdefault(carried, carried)
            if descriptor is carried:
                self._kept_by_id[id(carried)] = carried
        descriptor.put(item, timeout=timeout)
