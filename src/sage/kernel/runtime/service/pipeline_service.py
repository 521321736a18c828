"""Pipeline-as-service: a whole pipeline answers service calls.

`env.from_service(name, max_in_flight=n)` starts a service pipeline. Its
bridge source takes requests from the service's request queue (callers use
plain `call_service(name, payload)`), each request's first argument becomes a
record, the pipeline's operators see only those payloads, and `.reply()` at
the end answers the request the record came from.

The request travels beside the payload in an `Envelope`: operators of a
service pipeline unwrap it before calling the user function and wrap the
result again, so ordinary function classes work unchanged. At most
`max_in_flight` requests are inside the pipeline at once: the bridge takes a
credit from a credit queue before each request and the reply sink returns it.
"""

from __future__ import annotations

import queue
from typing import Any

from ...api.function import SinkFunction, SourceFunction
from ..communication.queue_descriptor import BaseQueueDescriptor
from .protocol import ResponseQueues, ServiceRequest, ServiceResponse

CREDIT_WAIT = 0.05
"""Seconds the bridge blocks on credits or requests before handing control back to its task."""


class Envelope:
    """A record of a service pipeline and the request it answers."""

    __slots__ = ("payload", "request")

    def __init__(self, payload: Any, request: ServiceRequest) -> None:
        self.payload = payload
        self.request = request

    def __reduce__(self) -> tuple[Any, ...]:
        return (Envelope, (self.payload, self.request))


def fill_credits(credits: BaseQueueDescriptor, count: int) -> None:
    """Put the initial `count` credits (called once when the graph is built)."""
    credits.put_many([True] * count)


class ServiceBridgeSource(SourceFunction):
    """Takes one credit, then one request, and emits it as an `Envelope`.

    Blocks inside `execute()` until both are there, pushing out what its
    router has batched before it waits (so no answered-to-be record sits in a
    batch), and re-checking the task's stop event every `CREDIT_WAIT`
    seconds; returns None only once the task is stopping. A request for a
    method other than `process` is answered with an error at once.
    """

    def __init__(self, service_name: str, requests: BaseQueueDescriptor, credits: BaseQueueDescriptor) -> None:
        self.service_name = service_name
        self.requests = requests
        self.credits = credits
        self._has_credit = False
        self._responses = ResponseQueues()

    def _take(self, descriptor: BaseQueueDescriptor) -> Any:
        try:
            return descriptor.get_nowait()
        except queue.Empty:
            pass
        self.ctx.router.flush()
        while not self.ctx.stop_event.is_set():
            try:
                return descriptor.get(timeout=CREDIT_WAIT)
            except queue.Empty:
                continue
        return None

    def execute(self) -> Any:
        while not self._has_credit:
            if self._take(self.credits) is None:
                return None
            self._has_credit = True
        request: ServiceRequest | None = self._take(self.requests)
        if request is None:
            return None
        if request.method != "process" or len(request.args) != 1 or request.kwargs:
            error = TypeError(f"pipeline service {self.service_name!r} takes call_service(name, payload) with "
                              f"method 'process' and one argument; got method {request.method!r} with "
                              f"{len(request.args)} argument(s) and keywords {sorted(request.kwargs)}")
            self._responses.send(request, ServiceResponse.failure_of(request.request_id, error))
            return None
        self._has_credit = False
        return Envelope(request.args[0], request)


class ServiceReplySink(SinkFunction):
    """Answers the caller of each envelope's request with its payload, then returns a credit."""

    def __init__(self, credits: BaseQueueDescriptor) -> None:
        self.credits = credits
        self._responses = ResponseQueues()

    def execute(self, data: Envelope) -> None:
        request = data.request
        self._responses.send(request, ServiceResponse.success(request.request_id, data.payload))
        self.credits.put(True)


def wrap_enveloped(kind: str, function: Any) -> None:
    """Make `function` (an instance in a service pipeline) take and give `Envelope`s.

    The user function still sees plain payloads. Bridge and reply functions
    are left alone: they speak envelopes already.
    """
    if isinstance(function, (ServiceBridgeSource, ServiceReplySink)):
        return
    execute = function.execute
    if kind == "map":
        function.execute = lambda e: Envelope(execute(e.payload), e.request)
    elif kind in ("filter", "keyby", "sink"):
        function.execute = lambda e: execute(e.payload)
    elif kind == "flatmap":
        def flat(e: Envelope) -> list[Envelope]:
            result = execute(e.payload)
            out = [Envelope(x, e.request) for x in (result or ())]
            collected = getattr(function, "_collected", None)
            if collected:
                out.extend(Envelope(x, e.request) for x in collected)
                collected.clear()
            return out

        function.execute = flat
    else:
        raise ValueError(f"{kind} operators cannot run in a service pipeline")


__all__ = ["Envelope", "ServiceBridgeSource", "ServiceReplySink", "fill_credits", "wrap_enveloped"]
