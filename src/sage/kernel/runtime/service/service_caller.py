"""The caller side of services: send requests, match responses by id."""

from __future__ import annotations

import heapq
import queue
import threading
import time
import uuid
from concurrent.futures import CancelledError, Future
from typing import Any

from ...errors import ServiceCallError
from ..communication.errors import SendCancelled
from .protocol import ServiceRequest, ServiceResponse

LISTEN_WAIT = 0.2
"""Longest a listener blocks before re-checking for close and expired calls."""

RESPONSE_BATCH = 256


class ServiceCaller:
    """One per running instance: writes requests to service queues and reads one response queue.

    One thread at a time reads the response queue and resolves every pending
    call's future by request id: a synchronous caller reads while it waits
    (no thread hop on the way back), and a listener thread, started by the
    first asynchronous call, reads when no caller does. A response for a
    call that already timed out is dropped and counted in `late_responses`,
    never given to another call. Calls whose deadline passes fail with
    `TimeoutError` even if no one waits on the future.
    """

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.late_responses = 0
        self.calls = 0
        self._pending: dict[str, tuple[Future, str, str, float | None]] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        self._turn = threading.Condition()
        self._reading = False

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
                   timeout: float | None) -> Future:
        """Send a request; return a future that resolves with the answer, the error, or `TimeoutError`.

        Raises at once for an unknown service or method, and `TimeoutError`
        when the service's request queue stays full for the whole timeout.
        """
        self._ensure_listener()
        return self._send(service, method, args, kwargs, timeout)

    def _send(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              timeout: float | None) -> Future:
        self._check(service, method)
        if self._closed.is_set():
            raise RuntimeError(f"{self.ctx.name}: service calls are closed (the instance is shutting down)")
        timeout = self.ctx.config.service_timeout if timeout is None else timeout
        request_id = uuid.uuid4().hex
        now = time.monotonic()
        deadline = now + timeout
        future: Future = Future()
        with self._lock:
            self._pending[request_id] = (future, service, method, timeout)
            heapq.heappush(self._deadlines, (deadline, request_id))
            self.calls += 1
        request = ServiceRequest(request_id, service, method, args, kwargs, time.time() + timeout,
                                 self.ctx.response_qd, self.ctx.name)
        try:
            self._put_request(service, request, deadline)
        except BaseException:
            with self._lock:
                self._pending.pop(request_id, None)
            raise
        return future

    def _put_request(self, service: str, request: ServiceRequest, deadline: float) -> None:
        qd = self.ctx.service_qds[service]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"service {service!r} method {request.method!r}: request queue stayed full")
            if self.ctx.cancel_event.is_set():
                raise SendCancelled(f"call to service {service!r} cancelled")
            try:
                qd.put(request, timeout=min(remaining, LISTEN_WAIT))
                return
            except queue.Full:
                continue

    def call(self, service: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None) -> Any:
        """Send a request and block for the answer (up to `timeout`, the job default when None).

        Raises `TimeoutError` naming the service, method and timeout; the
        service's own exception (same type when it can be rebuilt, else
        `ServiceCallError`); `RuntimeError` at once for a synchronous self-call
        of a service with `max_concurrency=1` (it could never be answered).
        """
        own = getattr(self.ctx, "service_name", None)
        if own == service and getattr(self.ctx, "max_concurrency", 0) == 1:
            raise RuntimeError(f"service {service!r} calls itself synchronously with max_concurrency=1: "
                               f"it would wait for itself; use call_service_async or raise max_concurrency")
        future = self._send(service, method, args, kwargs, timeout)
        while not future.done():
            self._take_turn(future)
        return future.result()

    # ------------------------------------------------------------------ listening
    def _ensure_listener(self) -> None:
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = threading.Thread(target=self._listen, daemon=True,
                                                      name=f"sage-responses-{self.ctx.name}")
                    self._listener.start()

    def _next_wait(self) -> float:
        with self._lock:
            if not self._deadlines:
                return LISTEN_WAIT
            return max(0.0, min(LISTEN_WAIT, self._deadlines[0][0] - time.monotonic()))

    def _listen(self) -> None:
        while not self._closed.is_set():
            self._take_turn(None)

    def _take_turn(self, waiting_for: Future | None) -> None:
        """Read the response queue once if no other thread does; else wait for a dispatch or a free turn."""
        with self._turn:
            if waiting_for is not None and waiting_for.done():
                return
            if self._reading:
                self._turn.wait(LISTEN_WAIT)
                return
            self._reading = True
        try:
            try:
                responses = self.ctx.response_qd.get_many(RESPONSE_BATCH, self._next_wait())
            except queue.Empty:
                responses = ()
            except Exception as exc:  # the transport failed: fail every pending call rather than hang
                self._fail_all(ConnectionError(f"{self.ctx.name}: response queue failed: {exc!r}"))
                self._closed.wait(LISTEN_WAIT)  # do not spin on a broken transport
                responses = ()
            for response in responses:
                self._resolve(response)
            self._expire()
        finally:
            with self._turn:
                self._reading = False
                self._turn.notify_all()

    def _resolve(self, response: ServiceResponse) -> None:
        with self._lock:
            entry = self._pending.pop(response.request_id, None)
            if entry is None:
                self.late_responses += 1
                return
        future, service, method, _ = entry
        if response.ok:
            future.set_result(response.value)
        else:
            future.set_exception(_rebuild_error(service, method, response))

    def _expire(self) -> None:
        now = time.monotonic()
        expired = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                _, request_id = heapq.heappop(self._deadlines)
                entry = self._pending.pop(request_id, None)
                if entry is not None:
                    expired.append(entry)
        for future, service, method, timeout in expired:
            future.set_exception(TimeoutError(
                f"service {service!r} method {method!r} gave no answer within {timeout} s"))

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            entries = list(self._pending.values())
            self._pending.clear()
            self._deadlines.clear()
        for future, *_ in entries:
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        """Stop listening; calls still pending fail with `CancelledError`."""
        self._closed.set()
        self._fail_all(CancelledError(f"{self.ctx.name} shut down with the call pending"))
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(LISTEN_WAIT * 2)


def _rebuild_error(service: str, method: str, response: ServiceResponse) -> BaseException:
    """The service's exception (same type when it could travel), else `ServiceCallError`."""
    return response.failure.rebuild(
        f"service {service!r} method {method!r}",
        lambda type_name, message, text: ServiceCallError(service, method, type_name, message, text),
    )
