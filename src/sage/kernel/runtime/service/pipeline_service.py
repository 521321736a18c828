"""Pipeline-as-service: a whole pipeline answers service calls.

`env.from_service(name, max_in_flight=n)` starts a service pipeline. Its
bridge source takes requests from the service's request queue (callers use
plain `call_service(name, payload)`), each request's first argument becomes a
record, the pipeline's operators see only those payloads, and `.reply()` at
the end answers the request the record came from.

The request travels beside the payload in an `Envelope`: operators of a
service pipeline unwrap it before calling the user function and wrap each
result in the envelope of the record it came from (see the operators), so
ordinary function classes work unchanged.

In flight: at most `max_in_flight` requests are inside the pipeline at once.
The service's credit queue holds the free slots, shared by every bridge
instance. A bridge takes a credit before each request and keeps the
request's id until the request is done, which is when the first record of it
reaches `.reply()` (the reply sink sends the id back to that bridge's own
inbox), or when the caller's deadline passes without one (its records were
filtered out, or skipped on error): the bridge then puts the credit back.
Later records of an answered request (a flatmap's second output) answer
nobody (the caller drops and counts them) and free nothing.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from ...errors import PipelineError
from ..communication.queue_descriptor import BaseQueueDescriptor
from ..graph.transformation import Transformation
from ..spec import ServiceSpec
from .protocol import ResponseQueues, ServiceRequest, ServiceResponse

CREDIT_WAIT = 0.05
"""Seconds the bridge blocks on credits, answers or requests before re-checking its stop event."""

INBOX_BATCH = 1024
"""Most answered request ids the bridge takes from its inbox at once."""


class Envelope:
    """A record of a service pipeline, the request it answers, and the inbox of the bridge that
    admitted the request (told when the request is answered)."""

    __slots__ = ("payload", "request", "inbox")

    def __init__(self, payload: Any, request: ServiceRequest, inbox: BaseQueueDescriptor) -> None:
        self.payload = payload
        self.request = request
        self.inbox = inbox

    def carrying(self, payload: Any) -> Envelope:
        """An envelope of the same request with another payload (what an operator made of it)."""
        return Envelope(payload, self.request, self.inbox)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Envelope, (self.payload, self.request, self.inbox))


def requests_queue(service: str) -> str:
    """The graph's name for the request queue of service `service`."""
    return f"service:{service}:requests"


def credits_queue(service: str) -> str:
    """The graph's name for the credit queue of pipeline service `service`."""
    return f"service:{service}:credits"


def service_pipeline(name: str, max_in_flight: int, parallelism: int) -> tuple[ServiceSpec, Transformation]:
    """The service and the bridge source that start a service pipeline (`env.from_service`).

    Raises `PipelineError` naming the service for a bad `max_in_flight`.
    """
    if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1:
        raise PipelineError(f"from_service {name!r}: max_in_flight must be an int >= 1, got {max_in_flight!r}")
    spec = ServiceSpec(name, None, pipeline=True, max_in_flight=max_in_flight)
    bridge = Transformation(
        kind="source", basename=f"service_{name}", function_class=ServiceBridgeSource, args=(name,),
        parallelism=parallelism, bind_queues={"requests": requests_queue(name), "credits": credits_queue(name)},
        detached=True, service_name=name,
    )
    return spec, bridge


def reply_transformation(upstream: Transformation, parallelism: int) -> Transformation:
    """The sink that ends a service pipeline (`.reply()`); `PipelineError` when `upstream` is not in one."""
    if not upstream.detached:
        raise PipelineError(f"reply after operator {upstream.basename!r}: only a stream from env.from_service() "
                            f"can reply")
    return Transformation(kind="sink", basename="reply", function_class=ServiceReplySink, parallelism=parallelism,
                          inputs=[upstream], detached=True, service_name=upstream.service_name)


def bridge_owner(service: str, transformations: list[Transformation]) -> str:
    """The task instance that reads a pipeline service's request and credit queues (its first bridge)."""
    for t in transformations:
        if t.is_source and t.detached and t.service_name == service:
            return f"{t.basename}_0"
    raise PipelineError(f"pipeline service {service!r} has no from_service source")


def fill_credits(credits: BaseQueueDescriptor, count: int) -> None:
    """Put the initial `count` credits (called once when the job starts)."""
    credits.put_many([True] * count)


class ServiceBridgeSource:
    """Takes one credit, then one request, and emits it as an `Envelope`.

    Blocks inside `execute()` until both are there, pushing out what its
    router has batched before it waits (a batched record cannot be answered,
    so its credit could never come back), and re-checking the task's stop
    event every `CREDIT_WAIT` seconds; returns None only once the task is
    stopping. While it waits it gives back the credits of requests that were
    answered or whose deadline passed. A request for a method other than
    `process`, or with other than one argument, is answered with a
    `TypeError` at once and uses no credit.

    The bridge's inbox is its task's response queue: the bridge itself never
    calls services, so the queue is free to carry answered request ids.
    """

    ctx: Any = None

    def __init__(self, service_name: str, requests: BaseQueueDescriptor, credits: BaseQueueDescriptor) -> None:
        self.service_name = service_name
        self.requests = requests
        self.credits = credits
        self._has_credit = False
        self._in_flight: dict[str, float] = {}  # request id -> the caller's deadline (time.time())
        self._next_expiry = float("inf")
        self._responses = ResponseQueues()

    def open(self) -> None:
        """Nothing to acquire: the queues attach on first use."""

    def close(self) -> None:
        """Nothing to release: credits of requests still in flight go with the job."""

    def execute(self) -> Envelope | None:
        while True:
            if not self._has_credit:
                if not self._acquire_credit():
                    return None
                self._has_credit = True
            request = self._take_request()
            if request is None:
                return None
            if request.method == "process" and len(request.args) == 1 and not request.kwargs:
                break
            error = TypeError(f"pipeline service {self.service_name!r} takes call_service(name, payload) with "
                              f"method 'process' and one argument; got method {request.method!r} with "
                              f"{len(request.args)} argument(s) and keywords {sorted(request.kwargs)}")
            self._responses.send(request, ServiceResponse.failure_of(request.request_id, error))
        self._has_credit = False
        self._in_flight[request.request_id] = request.deadline
        self._next_expiry = min(self._next_expiry, request.deadline)
        return Envelope(request.args[0], request, self.ctx.response_qd)

    def _acquire_credit(self) -> bool:
        stop = self.ctx.stop_event
        flushed = False
        while not stop.is_set():
            self._settle(0)
            try:
                self.credits.get_nowait()
                return True
            except queue.Empty:
                pass
            if not flushed:
                self.ctx.router.flush()
                flushed = True
            if self._in_flight:
                # Out of credits while ours are out: wait for our own requests to be answered.
                self._settle(CREDIT_WAIT)
                continue
            try:
                self.credits.get(timeout=CREDIT_WAIT)
                return True
            except queue.Empty:
                continue
        return False

    def _take_request(self) -> ServiceRequest | None:
        try:
            request: ServiceRequest = self.requests.get_nowait()
            return request
        except queue.Empty:
            pass
        self.ctx.router.flush()
        stop = self.ctx.stop_event
        while not stop.is_set():
            try:
                request = self.requests.get(timeout=CREDIT_WAIT)
                return request
            except queue.Empty:
                self._settle(0)  # idle: give back what is done (another bridge may be waiting)
        return None

    def _settle(self, wait: float) -> None:
        """Give back the credits of our requests that were answered (ids in the inbox, waiting up to
        `wait` seconds for one) or whose deadline passed."""
        try:
            answered = self.ctx.response_qd.get_many(INBOX_BATCH, wait)
        except queue.Empty:
            answered = ()
        in_flight = self._in_flight
        freed = sum(1 for request_id in answered if in_flight.pop(request_id, None) is not None)
        now = time.time()
        if now >= self._next_expiry:
            expired = [request_id for request_id, deadline in in_flight.items() if deadline <= now]
            for request_id in expired:
                del in_flight[request_id]
            freed += len(expired)
            self._next_expiry = min(in_flight.values(), default=float("inf"))
        if freed:
            # Never blocks: the credits out (ours among them) are all that is missing from the queue.
            self.credits.put_many([True] * freed)


class ServiceReplySink:
    """Answers the caller of each envelope's request with its payload, then tells the request's
    bridge it was answered (which frees its credit on the first answer)."""

    ctx: Any = None

    def __init__(self) -> None:
        self._queues = ResponseQueues()

    def open(self) -> None:
        """Nothing to acquire."""

    def close(self) -> None:
        """Nothing to release."""

    def execute(self, data: Envelope) -> None:
        request = data.request
        self._queues.send(request, ServiceResponse.success(request.request_id, data.payload))
        self._queues.put(data.inbox, request.request_id)


__all__ = ["Envelope", "ServiceBridgeSource", "ServiceReplySink", "bridge_owner", "credits_queue", "fill_credits",
           "reply_transformation", "requests_queue", "service_pipeline"]
