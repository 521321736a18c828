"""The caller side of services: send requests, match responses by id."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from ...errors import ServiceCallError
from ..communication.errors import SendCancelled
from .awaitable_future import AwaitableFuture
from .protocol import ServiceRequest, ServiceResponse
from .request_sender import RequestSender

LISTEN_WAIT = 0.2
"""Longest a reader blocks before re-checking for close, cancellation and expired calls."""

RESPONSE_BATCH = 256

logger = logging.getLogger(__name__)


class _Call:
    """One pending call. A synchronous call has no future: its outcome (a `ServiceResponse` or a
    local exception) is stored here, under the caller's lock, for its waiting thread to pick up."""

    __slots__ = ("service", "method", "timeout", "future", "outcome", "sent")

    def __init__(self, service: str, method: str, timeout: float, future: Future[Any] | None) -> None:
        self.service = service
        self.method = method
        self.timeout = timeout
        self.future = future
        self.outcome: ServiceResponse | BaseException | None = None
        self.sent = True  # False while its request waits in the RequestSender

    def timed_out(self) -> TimeoutError:
        if not self.sent:
            return TimeoutError(f"service {self.service!r} method {self.method!r}: request queue stayed full for "
                                f"{self.timeout} s (the request was never sent)")
        return TimeoutError(f"service {self.service!r} method {self.method!r} gave no answer within {self.timeout} s")


class ServiceCaller:
    """One per running instance: writes requests to service queues and reads one response queue.

    One thread at a time reads the response queue and hands every response
    to its pending call by request id: a synchronous caller reads while it
    waits (no thread hop on the way back), and a listener thread, started by
    the first asynchronous call, reads when no caller does. A response for a
    call that already timed out (or was never made here) is dropped and
    counted in `late_responses`, never given to another call. Asynchronous
    calls whose deadline passes fail with `TimeoutError` even if no one waits
    on the future (within `LISTEN_WAIT` of the deadline).

    Request ids are a per-caller random prefix plus a counter: unique for
    this response queue, and cheap.

    A call made on an event loop never blocks it (see `call_async`): what
    cannot be put at once goes to a `RequestSender`, whose thread puts it.
    """

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.late_responses = 0
        self.calls = 0
        self._id_prefix = f"{uuid.uuid4().hex[:16]}-"
        self._ids = itertools.count()
        self._pending: dict[str, _Call] = {}
        self._deadlines: list[tuple[float, str]] = []  # asynchronous calls only
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)  # a reader's turn ended, or an outcome arrived
        self._waiters = 0
        self._reading = False
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        self._sender: RequestSender | None = None
        # Requests carry where to answer as a descriptor without a live queue: it crosses processes,
        # and the service attaches to it once (see ResponseQueues).
        self._reply_to = ctx.response_qd.to_serializable_descriptor()

    # ------------------------------------------------------------------ calling
    def _check(self, service: str, method: str) -> None:
        ctx = self.ctx
        if service not in ctx.service_qds:
            known = ", ".join(sorted(ctx.service_qds)) or "none"
            raise KeyError(f"{ctx.name}: no service named {service!r} is registered (registered: {known})")
        methods = ctx.service_methods.get(service)
        if methods is not None and method not in methods:
            raise AttributeError(f"{ctx.name}: service {service!r} has no method {method!r} "
                                 f"(it has: {', '.join(sorted(methods))})")

    def call_async(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   timeout: float | None) -> AwaitableFuture[Any]:
        """Send a request; return a future that resolves with the answer, the error, or `TimeoutError`.

        The future is a `concurrent.futures.Future` that coroutines may also
        `await` (see `AwaitableFuture`). Raises at once for an unknown
        service or method.

        On a thread that runs an event loop (a coroutine calls), it never
        blocks: the request goes on the service's queue at once when that
        queue is in this process and has room, else to this caller's
        `RequestSender`, which puts it as soon as there is room, behind the
        requests for the same service handed to it before (a put to a queue
        in another process may wait for its answer, so it always goes there).
        A request that cannot be put in time fails the future: `TimeoutError`
        when the queue stays full for the whole timeout, `SendCancelled` when
        the instance is cancelled first. Elsewhere it blocks while the queue
        is full, and raises that `TimeoutError` itself.
        """
        self._ensure_listener()
        future: AwaitableFuture[Any] = AwaitableFuture()
        if _on_event_loop():
            call, request, deadline = self._register(service, method, args, kwargs, timeout, future)
            # A caller that gives up (its await cancelled, e.g. by a timeout) waits no more: forget the call,
            # so that a request still waiting to be put is dropped instead of sent for nobody.
            future.add_done_callback(lambda done: done.cancelled() and self._forget(request))
            self._hand_over(call, request, deadline)
        else:
            self._send(service, method, args, kwargs, timeout, future)
        return future

    def call(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None) -> Any:
        """Send a request and block for the answer (up to `timeout`, the job default when None).

        Raises `TimeoutError` naming the service, method and timeout; the
        service's own exception (same type when it can be rebuilt, else
        `ServiceCallError`); `RuntimeError` at once for a synchronous self-call
        of a service with `max_concurrency=1` (it could never be answered);
        `SendCancelled` when the instance is cancelled while it waits;
        `RuntimeError` at once on a thread that runs an event loop (a coroutine
        would block every other call of its loop: it must await
        `call_service_async`).
        """
        if _on_event_loop():
            raise RuntimeError(f"call_service({service!r}) from a coroutine would block its event loop; use "
                               f"await self.call_service_async(...) instead")
        if service == getattr(self.ctx, "service_name", None) and getattr(self.ctx, "max_concurrency", 0) == 1:
            raise RuntimeError(f"service {service!r} calls itself synchronously with max_concurrency=1: "
                               f"it would wait for itself; use call_service_async or raise max_concurrency")
        call, request_id, deadline = self._send(service, method, args, kwargs, timeout, None)
        cancel = self.ctx.cancel_event
        while True:
            with self._lock:
                if call.outcome is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or cancel.is_set():
                    del self._pending[request_id]
                    if remaining <= 0:
                        raise call.timed_out()
                    raise SendCancelled(f"call to service {service!r} cancelled")
                if self._reading:
                    self._waiters += 1
                    self._turn.wait(min(remaining, LISTEN_WAIT))
                    self._waiters -= 1
                    continue
                self._reading = True
                wait = min(remaining, self._next_async_deadline())
            self._read(wait)
        return _result(call)

    def _send(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              timeout: float | None, future: Future[Any] | None) -> tuple[_Call, str, float]:
        """Register a call and put its request, blocking while the queue is full; (call, id, deadline)."""
        call, request, deadline = self._register(service, method, args, kwargs, timeout, future)
        try:
            self._put_request(service, request, deadline)
        except BaseException:
            self._forget(request)
            raise
        return call, request.request_id, deadline

    def _register(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  timeout: float | None, future: Future[Any] | None) -> tuple[_Call, ServiceRequest, float]:
        """Check the call and make it pending; (the call, its request, its deadline (`time.monotonic()`))."""
        self._check(service, method)
        ctx = self.ctx
        timeout = ctx.config.service_timeout if timeout is None else timeout
        request_id = f"{self._id_prefix}{next(self._ids)}"
        call = _Call(service, method, timeout, future)
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError(f"{ctx.name}: service calls are closed (the instance is shutting down)")
            self._pending[request_id] = call
            if future is not None:
                self._push_deadline(deadline, request_id)
            self.calls += 1
        request = ServiceRequest(request_id, service, method, args, kwargs, time.time() + timeout,
                                 self._reply_to, ctx.name)
        return call, request, deadline

    def _forget(self, request: ServiceRequest) -> _Call | None:
        """Drop a pending call whose request was not put; returns it, or None if it is no longer pending."""
        with self._lock:
            return self._pending.pop(request.request_id, None)

    def _hand_over(self, call: _Call, request: ServiceRequest, deadline: float) -> None:
        """Put an async call's request without blocking the calling thread's event loop (see `call_async`)."""
        qd = self.ctx.service_qds[request.service]
        try:
            sender = self._request_sender()
            if sender.unsent(request.service) == 0 and _puts_at_once(qd):  # no earlier request may go later
                try:
                    qd.put_nowait(request)
                    return
                except queue.Full:
                    pass
            call.sent = False
            sender.send(request, deadline)
        except BaseException:
            self._forget(request)
            raise

    def _request_sender(self) -> RequestSender:
        sender = self._sender
        if sender is None:
            with self._lock:
                if self._closed.is_set():  # close() would not see a sender made now
                    raise SendCancelled(f"{self.ctx.name}: service calls are closed (the instance is shutting down)")
                sender = self._sender
                if sender is None:
                    sender = self._sender = RequestSender(self.ctx.name, self.ctx.service_qds, self.ctx.cancel_event,
                                                          self._still_pending, self._mark_sent, self._fail_unsent)
        return sender

    def _still_pending(self, request: ServiceRequest) -> bool:
        """True while `request`'s call waits for its answer (the sender drops it otherwise, unsent)."""
        return request.request_id in self._pending

    def _mark_sent(self, request: ServiceRequest) -> None:
        call = self._pending.get(request.request_id)
        if call is not None:
            call.sent = True

    def _fail_unsent(self, request: ServiceRequest, error: BaseException) -> None:
        """The sender could not put `request`: fail its call (unless it already ended, e.g. timed out)."""
        call = self._forget(request)
        if call is not None:
            _deliver([(call, error)])

    def _put_request(self, service: str, request: ServiceRequest, deadline: float) -> None:
        qd = self.ctx.service_qds[service]
        cancel = self.ctx.cancel_event
        while True:
            if cancel.is_set():
                raise SendCancelled(f"call to service {service!r} cancelled")
            remaining = deadline - time.monotonic()
            try:
                qd.put(request, timeout=min(max(remaining, 0.0), LISTEN_WAIT))  # tried once even at 0
                return
            except queue.Full:
                if remaining <= 0:
                    raise TimeoutError(f"service {service!r} method {request.method!r}: "
                                       f"request queue stayed full") from None

    # ------------------------------------------------------------------ deadlines of asynchronous calls
    def _push_deadline(self, deadline: float, request_id: str) -> None:
        """Remember an async call's deadline (lock held). Entries of answered calls are dropped lazily;
        the heap is rebuilt when they outnumber the pending calls, so it never outgrows them."""
        deadlines = self._deadlines
        heapq.heappush(deadlines, (deadline, request_id))
        if len(deadlines) > 2 * len(self._pending) + 64:
            pending = self._pending
            deadlines[:] = [entry for entry in deadlines if entry[1] in pending]
            heapq.heapify(deadlines)

    def _next_async_deadline(self) -> float:
        """Seconds until the earliest async deadline, at most `LISTEN_WAIT` (lock held)."""
        if not self._deadlines:
            return LISTEN_WAIT
        return max(0.0, min(LISTEN_WAIT, self._deadlines[0][0] - time.monotonic()))

    def _pop_expired(self, now: float, out: list[tuple[_Call, BaseException | ServiceResponse]]) -> None:
        deadlines, pending = self._deadlines, self._pending
        while deadlines and deadlines[0][0] <= now:
            _, request_id = heapq.heappop(deadlines)
            call = pending.pop(request_id, None)
            if call is not None:
                out.append((call, call.timed_out()))

    # ------------------------------------------------------------------ reading
    def _ensure_listener(self) -> None:
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = threading.Thread(target=self._listen, daemon=True,
                                                      name=f"sage-responses-{self.ctx.name}")
                    self._listener.start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if self._reading:
                    self._waiters += 1
                    self._turn.wait(LISTEN_WAIT)
                    self._waiters -= 1
                    continue
                self._reading = True
                wait = self._next_async_deadline()
            self._read(wait)

    def _read(self, wait: float) -> None:
        """One turn of the reader (who set `_reading`): read responses for up to `wait` seconds,
        hand them out, expire async calls, then give up the turn."""
        failure: str | None = None
        try:
            responses = self.ctx.response_qd.get_many(RESPONSE_BATCH, wait)
        except queue.Empty:
            responses = ()
        except Exception as exc:  # the transport failed: fail every pending call rather than hang
            responses = ()
            failure = f"{self.ctx.name}: response queue failed: {exc!r}"
        futures: list[tuple[_Call, BaseException | ServiceResponse]] = []
        with self._lock:
            pending = self._pending
            for response in responses:
                if response is None:  # close() waking the listener
                    continue
                call = pending.pop(response.request_id, None)
                if call is None:
                    self.late_responses += 1
                elif call.future is None:
                    call.outcome = response
                else:
                    futures.append((call, response))
            if failure is not None:
                futures.extend(self._pop_all(ConnectionError, failure))
            elif self._deadlines:
                self._pop_expired(time.monotonic(), futures)
            self._reading = False
            if self._waiters:
                self._turn.notify_all()
        _deliver(futures)
        if failure is not None:
            self._closed.wait(LISTEN_WAIT)  # do not spin on a broken transport

    def _pop_all(self, error_type: type[BaseException], message: str
                 ) -> list[tuple[_Call, BaseException | ServiceResponse]]:
        """Fail every pending call with its own `error_type(message)` (lock held): sync calls here,
        futures returned for `_deliver`."""
        futures: list[tuple[_Call, BaseException | ServiceResponse]] = []
        for call in self._pending.values():
            if call.future is None:
                call.outcome = error_type(message)
            else:
                futures.append((call, error_type(message)))
        self._pending.clear()
        self._deadlines.clear()
        if self._waiters:
            self._turn.notify_all()
        return futures

    def close(self) -> None:
        """Stop listening; calls still pending fail with `CancelledError`."""
        with self._lock:
            self._closed.set()
            futures = self._pop_all(CancelledError, f"{self.ctx.name} shut down with the call pending")
        _deliver(futures)
        if self._sender is not None:
            self._sender.close()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            try:
                self.ctx.response_qd.put_nowait(None)  # wake the listener now rather than within LISTEN_WAIT
            except Exception as exc:  # the transport is gone: the listener ends within LISTEN_WAIT anyway
                logger.debug("%s: could not wake the response listener: %r", self.ctx.name, exc)
            listener.join(LISTEN_WAIT * 2)


def _puts_at_once(qd: Any) -> bool:
    """True when `qd.put_nowait` never waits: a queue of this process (a Python queue, or an RPC queue whose
    server runs here). An RPC client's put may ask the server for credit and wait for its answer; a Ray
    queue's put is an actor call."""
    return qd.queue_type == "python" or (qd.queue_type == "rpc_queue" and bool(qd.is_local))


def _on_event_loop() -> bool:
    """True when the calling thread is running an asyncio event loop (a coroutine is calling)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _deliver(outcomes: list[tuple[_Call, BaseException | ServiceResponse]]) -> None:
    """Resolve futures outside the lock: their callbacks may run user code (or call services)."""
    for call, outcome in outcomes:
        future = call.future
        assert future is not None, "only asynchronous calls are delivered to futures"
        try:
            if isinstance(outcome, ServiceResponse) and outcome.ok:
                future.set_result(outcome.value)
            elif isinstance(outcome, ServiceResponse):
                future.set_exception(_rebuild_error(call.service, call.method, outcome))
            else:
                future.set_exception(outcome)
        except InvalidStateError:  # its owner cancelled the future: nobody wants the outcome
            pass


def _result(call: _Call) -> Any:
    """The value of a finished synchronous call, or raise its error."""
    outcome = call.outcome
    assert outcome is not None, "a synchronous call's outcome is set before its caller reads it"
    if not isinstance(outcome, ServiceResponse):
        raise outcome
    if outcome.ok:
        return outcome.value
    raise _rebuild_error(call.service, call.method, outcome)


def _rebuild_error(service: str, method: str, response: ServiceResponse) -> BaseException:
    """The service's exception (same type when it could travel), else `ServiceCallError`."""
    assert response.failure is not None, "a failed response carries its failure"
    return response.failure.rebuild(
        f"service {service!r} method {method!r}",
        lambda type_name, message, text: ServiceCallError(service, method, type_name, message, text),
    )
