"""The service side: one service instance answering requests from its queue."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Any

from ..context.service_context import ServiceContext
from ..portable_error import PortableError
from .protocol import ResponseQueues, ServiceRequest, ServiceResponse

IDLE_WAIT = 0.2
"""Seconds an idle service worker blocks before re-checking for stop."""

LATENCY_SAMPLES = 2048

logger = logging.getLogger(__name__)


class ServiceTask:
    """Builds the service object and serves its request queue with `max_concurrency` threads.

    `run()` blocks until `stop()`: it calls `setup()`, answers requests (the
    calling thread is one of the workers), then answers every request still
    queued with an error (nobody waits in vain), and calls `cleanup()`.
    Requests whose caller already gave up (deadline passed) are skipped and
    counted. An exception in `__init__` or `setup()` fails `run()`.
    """

    def __init__(self, ctx: ServiceContext, service_class: type, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.ctx = ctx
        self.service_class = service_class
        self.args = args
        self.kwargs = kwargs
        self.instance: Any = None
        self.calls = 0
        self.errors = 0
        self.expired = 0
        self.status = "created"
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._latency_sum = 0.0
        self._callers: collections.Counter[str] = collections.Counter()
        self._stats_lock = threading.Lock()
        self._responses = ResponseQueues()
        # The methods callers may name (hooks and helpers are not among them): the service side
        # enforces the same list the callers check.
        self._methods = ctx.service_methods[ctx.service_name]

    @property
    def name(self) -> str:
        return self.ctx.name

    def stop(self) -> None:
        """Stop serving; `run()` returns after draining and `cleanup()`.

        Wakes idle workers at once with one `None` per worker in the request
        queue (skipped if the queue is full: they then wake within `IDLE_WAIT`).
        """
        self.ctx.stop_event.set()
        for _ in range(self.ctx.max_concurrency):
            try:
                self.ctx.request_qd.put_nowait(None)
            except queue.Full:
                break

    cancel = stop

    def run(self) -> str:
        self.status = "running"
        try:
            instance = self.instance = self.service_class(*self.args, **self.kwargs)
            instance.ctx = self.ctx
            instance.setup()
        except BaseException:
            self.status = "failed"
            self.ctx.close_services()
            raise
        workers = [threading.Thread(target=self._serve, daemon=True, name=f"sage-{self.name}-{i}")
                   for i in range(1, self.ctx.max_concurrency)]
        for worker in workers:
            worker.start()
        status = "failed"  # unless serving and cleanup() end normally
        try:
            self._serve()
            status = "finished"
        finally:
            self.ctx.stop_event.set()  # the workers end too, even if this thread ended by an error
            for worker in workers:
                worker.join()
            self._refuse_queued()
            try:
                instance.cleanup()
            except BaseException:
                status = "failed"
                raise
            finally:
                self.ctx.close_services()
                self.status = status
        return self.status

    def _serve(self) -> None:
        get = self.ctx.request_qd.get
        stop = self.ctx.stop_event
        while not stop.is_set():
            try:
                request = get(timeout=IDLE_WAIT)
            except queue.Empty:
                continue
            if request is not None:  # None only wakes this worker to see the stop
                self._answer(request)

    def _answer(self, request: ServiceRequest) -> None:
        started = time.monotonic()
        if time.time() > request.deadline:
            with self._stats_lock:
                self.expired += 1
            return
        method = getattr(self.instance, request.method, None) if request.method in self._methods else None
        try:
            if method is None:
                raise AttributeError(f"service {self.ctx.service_name!r} has no method {request.method!r}")
            response = ServiceResponse.success(request.request_id, method(*request.args, **request.kwargs))
            failed = False
        except Exception as exc:
            response = ServiceResponse.failure_of(request.request_id, exc)
            failed = True
        self._respond(request, response)
        with self._stats_lock:
            self.calls += 1
            self.errors += failed
            latency = time.monotonic() - started
            self._latencies.append(latency)
            self._latency_sum += latency
            self._callers[request.caller] += 1

    def _respond(self, request: ServiceRequest, response: ServiceResponse) -> None:
        try:
            self._responses.send(request, response, timeout=max(0.0, request.deadline - time.time()) + IDLE_WAIT)
        except Exception as exc:  # the caller's queue is gone or full past its deadline: it no longer waits
            logger.warning("%s could not answer %r: %r", self.name, request, exc)

    def _refuse_queued(self) -> None:
        while True:
            try:
                request = self.ctx.request_qd.get_nowait()
            except queue.Empty:
                return
            if request is None:
                continue
            # Raised in the caller as ServiceCallError(remote_type="ServiceStopped").
            stopped = PortableError(None, "ServiceStopped", "the service stopped before answering", "")
            self._respond(request, ServiceResponse(request.request_id, False, failure=stopped))

    def metrics(self) -> dict[str, Any]:
        """Calls, errors, expired requests, latency (seconds: p50 and p99 of the last
        `LATENCY_SAMPLES` calls, sum of all), calls per caller instance, request queue fill."""
        with self._stats_lock:
            samples = sorted(self._latencies)
            calls, errors, expired, latency_sum = self.calls, self.errors, self.expired, self._latency_sum
            callers = dict(self._callers)
        request_qd = self.ctx.request_qd
        queued = request_qd.qsize() if self.status == "running" and request_qd.is_initialized() else None

        def percentile(p: float) -> float | None:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else None

        return {"name": self.name, "service": self.ctx.service_name, "kind": "service", "status": self.status,
                "calls": calls, "errors": errors, "expired": expired, "latency_p50": percentile(0.50),
                "latency_p99": percentile(0.99), "latency_sum": latency_sum, "callers": callers,
                "request_queue_size": queued, "request_queue_maxsize": request_qd.maxsize}
