"""Batched service methods: the requests of every caller grouped into one call of the method.

A method marked with `@batch(max_batch_size, max_wait)` (see `api.service`)
takes a list and returns a list of the same length. Callers still send one
request each, with one argument. The service's workers add the requests they
take to the method's open batch; the batch runs when it holds
`max_batch_size` requests (on the worker that filled it) or `max_wait`
seconds after its first request was taken (on the first worker free to see
it due), whichever comes first. Each caller gets its own element of the
returned list; an element that is an exception is raised in that caller
only; an exception raised by the method, or a result of the wrong length,
fails every request of the batch.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..latency import LatencySamples
from ..portable_error import PortableError
from .protocol import ServiceRequest, ServiceResponse

BATCH_MARK = "__sage_batch__"
"""The attribute `@batch` sets on a method: its `BatchPolicy`."""


@dataclasses.dataclass(frozen=True)
class BatchPolicy:
    """How one method's requests are grouped: at most `max_batch_size` per call, none waiting longer than
    `max_wait` seconds for more (raises `ValueError` naming a bad value)."""

    max_batch_size: int = 32
    max_wait: float = 0.01

    def __post_init__(self) -> None:
        size = self.max_batch_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"max_batch_size must be an int >= 1, got {size!r}")
        wait = self.max_wait
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not math.isfinite(wait) or wait < 0:
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {wait!r}")


def batch_policy(method: Any) -> BatchPolicy | None:
    """The `BatchPolicy` of a method marked with `@batch`, else None."""
    policy = getattr(method, BATCH_MARK, None)
    return policy if isinstance(policy, BatchPolicy) else None


def misfit(service: str, method: str, request: ServiceRequest) -> TypeError | None:
    """The error for a request a batched method cannot take (not exactly one argument), else None."""
    if len(request.args) == 1 and not request.kwargs:
        return None
    return TypeError(f"service {service!r} method {method!r} is batched: call it with exactly one positional "
                     f"argument (got {len(request.args)}, and keywords {sorted(request.kwargs)})")


class Waiting:
    """A request in a batch and when a worker took it (`time.monotonic()`)."""

    __slots__ = ("request", "taken_at")

    def __init__(self, request: ServiceRequest, taken_at: float) -> None:
        self.request = request
        self.taken_at = taken_at


class Batcher:
    """The open batch of one batched method, shared by the service's workers (thread-safe).

    `add` and the `claim_*` methods hand a batch to exactly one worker,
    which runs it; a new batch opens with the next request.
    """

    def __init__(self, method: str, policy: BatchPolicy) -> None:
        self.method = method
        self.policy = policy
        self.stats = BatchStats(policy)
        self._open: list[Waiting] = []
        self._deadline = math.inf
        self._lock = threading.Lock()

    @property
    def deadline(self) -> float:
        """When the open batch is due (`time.monotonic()`); infinity while no batch is open."""
        return self._deadline

    def add(self, request: ServiceRequest, taken_at: float) -> list[Waiting] | None:
        """Add a request; returns the batch when this request filled it (the caller runs it), else None."""
        with self._lock:
            if not self._open:
                self._deadline = taken_at + self.policy.max_wait
            self._open.append(Waiting(request, taken_at))
            return self._claim() if len(self._open) >= self.policy.max_batch_size else None

    def claim_due(self, now: float) -> list[Waiting] | None:
        """The open batch if it is due at `now` (the caller runs it), else None."""
        if now < self._deadline:  # read without the lock: a stale value only delays the claim to the next look
            return None
        with self._lock:
            return self._claim() if self._open and now >= self._deadline else None

    def claim_all(self) -> list[Waiting] | None:
        """The open batch, due or not (when the service stops), or None."""
        with self._lock:
            return self._claim() if self._open else None

    def _claim(self) -> list[Waiting]:
        claimed, self._open, self._deadline = self._open, [], math.inf
        return claimed


class BatchStats:
    """Batch sizes and how long requests waited for their batch to start, for the service's metrics."""

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.sizes: collections.Counter[int] = collections.Counter()
        self.queue_delay = LatencySamples()
        self._lock = threading.Lock()

    def record(self, size: int, delays: list[float]) -> None:
        with self._lock:
            self.sizes[size] += 1
        for delay in delays:
            self.queue_delay.add(delay)

    def snapshot(self) -> dict[str, Any]:
        """Batches, requests, mean size, count per size, queue delay p50/p99/sum (seconds)."""
        with self._lock:
            sizes = dict(sorted(self.sizes.items()))
        batches, requests = sum(sizes.values()), sum(size * n for size, n in sizes.items())
        p50, p99, total, _ = self.queue_delay.summary()
        return {"max_batch_size": self.policy.max_batch_size, "max_wait": self.policy.max_wait,
                "batches": batches, "requests": requests, "mean_size": requests / batches if batches else None,
                "sizes": sizes, "queue_delay_p50": p50, "queue_delay_p99": p99, "queue_delay_sum": total}


def answer_batch(method: Callable[[list[Any]], Any], service: str, name: str,
                 requests: list[ServiceRequest]) -> list[ServiceResponse]:
    """Call the batched `method` once with every request's argument; one response per request, in order.

    Never raises: the method's exception, and a result that is not a list
    of `len(requests)` items, become the answer of every request.
    """
    try:
        results = _results(method([request.args[0] for request in requests]), len(requests), service, name)
    except Exception as exc:
        failure = PortableError.capture(exc)
        return [ServiceResponse(request.request_id, False, failure=failure.copy()) for request in requests]
    return [ServiceResponse.failure_of(request.request_id, value) if isinstance(value, Exception)
            else ServiceResponse.success(request.request_id, value)
            for request, value in zip(requests, results, strict=True)]


def _results(returned: Any, count: int, service: str, name: str) -> list[Any]:
    where = f"batched method {name!r} of service {service!r}"
    if isinstance(returned, (str, bytes, Mapping)) or not hasattr(returned, "__iter__"):
        raise TypeError(f"{where} must return a list with one result per request, got {type(returned).__name__}")
    results = list(returned)
    if len(results) != count:
        raise ValueError(f"{where} returned {len(results)} results for a batch of {count} requests")
    return results
