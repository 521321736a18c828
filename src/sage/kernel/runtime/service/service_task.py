"""The service side: one service instance answering requests from its queue."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Any

from ..context.service_context import ServiceContext
from ..latency import LatencySamples
from ..portable_error import PortableError
from .batching import Batcher, Waiting, answer_batch, batch_policy, misfit
from .protocol import ResponseQueues, ServiceRequest, ServiceResponse

IDLE_WAIT = 0.2
"""Seconds an idle service worker blocks before re-checking for stop."""

logger = logging.getLogger(__name__)


class ServiceTask:
    """Builds the service object and serves its request queue with `max_concurrency` threads.

    `run()` blocks until `stop()`: it calls `setup()`, answers requests (the
    calling thread is one of the workers), then answers every request still
    queued with an error (nobody waits in vain), and calls `cleanup()`.
    Requests whose caller already gave up (deadline passed) are skipped and
    counted. An exception in `__init__` or `setup()` fails `run()`.

    Methods marked `@batch` are answered in batches (see `batching`): a
    worker adds their requests to the method's open batch, and runs it when
    it is full or due; a worker's wait for the next request ends when a
    batch falls due. One worker at a time reads the request queue, up to the
    largest batch at once (on a remote queue, one call fills a batch), and
    every worker takes the requests it read one by one: a worker busy with a
    request or a batch holds up none of the others. When the service stops,
    requests read and open batches still run.
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
        self.latency = LatencySamples()
        self._batchers: dict[str, Batcher] = {}
        self._callers: collections.Counter[str] = collections.Counter()
        self._stats_lock = threading.Lock()
        self._responses = ResponseQueues()
        # A batching service's requests read from the queue and not yet taken by a worker (see `_next_request`).
        self._read: collections.deque[ServiceRequest] = collections.deque()
        self._read_changed = threading.Condition()
        self._reading = False
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
            self._batchers = {name: Batcher(name, policy) for name in sorted(self._methods)
                              if (policy := batch_policy(getattr(instance, name, None))) is not None}
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
            while self._read:  # read by a worker, so taken: they get answers like those in open batches
                self._take(self._read.popleft())
            self._run_open_batches()
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
        if self._batchers:
            self._serve_batching()
            return
        while not stop.is_set():
            try:
                request = get(timeout=IDLE_WAIT)
            except queue.Empty:
                continue
            if request is not None:  # None only wakes this worker to see the stop
                self._answer(request)

    def _serve_batching(self) -> None:
        """`_serve` for a service with batched methods: take the next request, then run the batches that
        fell due."""
        stop = self.ctx.stop_event
        batchers = list(self._batchers.values())
        most = max(batcher.policy.max_batch_size for batcher in batchers)
        while not stop.is_set():
            request = self._next_request(batchers, most)
            if request is not None:
                self._take(request)
                if self._read:
                    # Requests read already join their batches before one may fall due: on a loaded machine
                    # max_wait could otherwise pass half-way through a read that fills the batch.
                    continue
            now = time.monotonic()
            for batcher in batchers:
                claimed = batcher.claim_due(now)
                if claimed:
                    self._run_batch(batcher, claimed)

    def _next_request(self, batchers: list[Batcher], most: int) -> ServiceRequest | None:
        """The next request read from the queue, or None when a batch may have fallen due meanwhile.

        Takes one the reading worker left, or, when there is none and no
        worker reads, reads up to `most` requests itself (blocking until the
        next batch falls due, at most `IDLE_WAIT`) and leaves them to all.
        """
        changed = self._read_changed
        with changed:
            if self._read:
                return self._read.popleft()
            wait = min(IDLE_WAIT, max(0.0, min(batcher.deadline for batcher in batchers) - time.monotonic()))
            if self._reading:
                changed.wait(wait)
                return self._read.popleft() if self._read else None
            self._reading = True
        requests: list[Any] = []
        get_many = self.ctx.request_qd.get_many
        try:
            requests = get_many(most, wait)
            while len(requests) < most:  # a queue may answer short of what it holds (a Ray queue: whole chunks)
                requests += get_many(most - len(requests), 0)
        except queue.Empty:
            pass
        finally:
            with changed:
                self._reading = False
                self._read.extend(request for request in requests if request is not None)  # None: see stop()
                changed.notify_all()
        return None

    def _take(self, request: ServiceRequest) -> None:
        """Answer a request of an unbatched method; add one of a batched method to its batch (and run the
        batch if that filled it)."""
        batcher = self._batchers.get(request.method)
        if batcher is None:
            self._answer(request)
            return
        taken_at = time.monotonic()
        if time.time() > request.deadline:
            with self._stats_lock:
                self.expired += 1
            return
        error = misfit(self.ctx.service_name, request.method, request)
        if error is not None:
            self._respond(request, ServiceResponse.failure_of(request.request_id, error))
            self._count([request], [True], [time.monotonic() - taken_at])
            return
        full = batcher.add(request, taken_at)
        if full:
            self._run_batch(batcher, full)

    def _run_batch(self, batcher: Batcher, batch: list[Waiting]) -> None:
        started, now = time.monotonic(), time.time()
        live = [waiting for waiting in batch if now <= waiting.request.deadline]
        if len(live) < len(batch):
            with self._stats_lock:
                self.expired += len(batch) - len(live)
        if not live:
            return
        requests = [waiting.request for waiting in live]
        responses = answer_batch(getattr(self.instance, batcher.method), self.ctx.service_name, batcher.method,
                                 requests)
        for request, response in zip(requests, responses, strict=True):
            self._respond(request, response)
        finished = time.monotonic()
        batcher.stats.record(len(live), [started - waiting.taken_at for waiting in live])
        self._count(requests, [not response.ok for response in responses],
                    [finished - waiting.taken_at for waiting in live])

    def _run_open_batches(self) -> None:
        """The service stops: run what waits in open batches (those requests were taken: they get answers)."""
        for batcher in self._batchers.values():
            claimed = batcher.claim_all()
            if claimed:
                self._run_batch(batcher, claimed)

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
        self._count([request], [failed], [time.monotonic() - started])

    def _count(self, requests: list[ServiceRequest], failed: list[bool], latencies: list[float]) -> None:
        """Count answered requests: whether each failed, and seconds from taking it to answering it."""
        with self._stats_lock:
            self.calls += len(requests)
            self.errors += sum(failed)
            for request in requests:
                self._callers[request.caller] += 1
        for latency in latencies:
            self.latency.add(latency)

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
        """Calls, errors, expired requests, latency (seconds: p50 and p99 of the most recent calls, sum of
        all), calls per caller instance, request queue fill; for a service with batched methods, per
        method its batches (`BatchStats.snapshot`)."""
        with self._stats_lock:
            calls, errors, expired = self.calls, self.errors, self.expired
            callers = dict(self._callers)
        p50, p99, latency_sum, _ = self.latency.summary()
        request_qd = self.ctx.request_qd
        # While running, attach if need be: a setup() that takes long must not hide the requests piling up.
        queued = request_qd.qsize() if self.status == "running" else None
        metrics = {"name": self.name, "service": self.ctx.service_name, "kind": "service", "status": self.status,
                   "calls": calls, "errors": errors, "expired": expired, "latency_p50": p50,
                   "latency_p99": p99, "latency_sum": latency_sum, "callers": callers,
                   "request_queue_size": queued, "request_queue_maxsize": request_qd.maxsize}
        if self._batchers:
            metrics["batches"] = {name: batcher.stats.snapshot() for name, batcher in self._batchers.items()}
        return metrics
