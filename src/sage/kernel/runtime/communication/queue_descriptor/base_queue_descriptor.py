"""The one queue interface every transport implements.

A queue descriptor is a small, serializable handle that names a queue
(`queue_id` + `queue_type` + configuration) and creates or attaches to the real
queue lazily, on first use. Descriptors travel between threads, processes and
machines as plain dicts (`to_dict()`) or pickles; the live queue never does.

Errors follow the standard library's `queue.Queue`: a put that finds no room in
time raises `queue.Full`, a get that finds nothing in time raises `queue.Empty`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

_DESCRIPTOR_TYPES: dict[str, type[BaseQueueDescriptor]] = {}


class BatchFull(queue.Full):
    """Raised by `put_many` when its timeout passed before every item was put.

    `accepted` is how many leading items of the batch were put before the
    timeout: they are in the queue and must not be sent again; the caller
    retries `items[accepted:]`.
    """

    def __init__(self, accepted: int) -> None:
        super().__init__(f"queue full: {accepted} item(s) of the batch were put before the timeout")
        self.accepted = accepted


class WeightedItem:
    """Base of queue items that stand for several records (a batch of them), or that must never wait.

    Bounded queues count capacity in records: an item weighs `weight` (its
    record count, at least 1); every other item weighs 1. An item goes into a
    bounded queue when it fits (queued records plus its own stay within
    `maxsize`) or when the queue is empty, so a queue never holds more than
    `maxsize` records unless one item alone is heavier.

    An item whose class sets `overflow = True` goes in whatever the queue
    holds, and its weight still counts (so it delays other items). Records
    fed back around a loop and the control items that travel a loop are such
    items: a put that never waits cannot close a cycle of waiting tasks (see
    docs/runtime_tasks.md, "Feedback loops").
    """

    __slots__ = ()

    overflow = False

    @property
    def weight(self) -> int:
        raise NotImplementedError


def item_weight(item: Any) -> int:
    """How many records `item` counts for in a bounded queue (see `WeightedItem`)."""
    return item.weight if isinstance(item, WeightedItem) else 1


def effective_timeout(block: bool, timeout: float | None) -> float | None:
    """`queue.Queue`'s block/timeout rules as one timeout: 0 for non-blocking, None for forever.

    Raises `ValueError` for a negative timeout, as `queue.Queue` does.
    """
    if not block:
        return 0.0
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


def _new_queue_id() -> str:
    return uuid.uuid4().hex


class BaseQueueDescriptor(ABC):
    """A lazily created, serializable handle to one queue.

    Subclasses set the class attribute `queue_type` (which registers them for
    `resolve_descriptor`), implement `_create_queue_instance()`, and may add
    configuration by overriding `_config()` (extra `to_dict()` keys, passed back
    to the constructor by `from_dict()`).

    The facade methods forward to the queue instance and create it on first
    use. Creation is thread-safe: threads racing on first access get the same
    instance.
    """

    queue_type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that names its own type registers: a subclass that inherits `queue_type`
        # (a test double, a wrapper) must not take the type over from its parent.
        if cls.__dict__.get("queue_type"):
            _DESCRIPTOR_TYPES[cls.queue_type] = cls

    def __init__(
        self,
        queue_id: str | None = None,
        maxsize: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if queue_id is not None and (not isinstance(queue_id, str) or not queue_id):
            raise ValueError(f"queue_id must be a non-empty string, got {queue_id!r}")
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0 (0 = unbounded), got {maxsize!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.queue_id: str = queue_id or _new_queue_id()
        self.maxsize: int = maxsize
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._queue: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lazy instance
    @abstractmethod
    def _create_queue_instance(self) -> Any:
        """Create, or attach to, the queue this descriptor names."""

    @property
    def queue_instance(self) -> Any:
        """The live queue, created or attached to on first access (thread-safe)."""
        q = self._queue
        if q is None:
            with self._lock:
                q = self._queue
                if q is None:
                    q = self._queue = self._create_queue_instance()
        return q

    def is_initialized(self) -> bool:
        """True once this descriptor holds a live queue instance."""
        return self._queue is not None

    def clear_cache(self) -> None:
        """Forget this descriptor's cached queue instance.

        The queue itself and the items in it are untouched; the next access
        attaches to the queue again through `_create_queue_instance()`.
        """
        with self._lock:
            self._queue = None

    def trim(self) -> BaseQueueDescriptor:
        """Drop the cached instance and return `self`, ready to pickle or ship.

        Same effect on the queue as `clear_cache()` (nothing queued is lost);
        returns the descriptor so it chains: `pickle.dumps(d.trim())`.
        """
        self.clear_cache()
        return self

    def close(self) -> None:
        """Release the queue. Subclasses say what happens to items still queued."""
        self.clear_cache()

    def flush(self, timeout: float | None = None) -> None:  # noqa: B027 (a no-op unless a transport sends later)
        """Block until every item this process put through this descriptor is in the queue.

        A no-op for transports whose puts are complete when they return; a
        transport that sends in the background (the RPC queue) waits here for
        the queue to confirm. Raises `TimeoutError` when that takes longer than
        `timeout` seconds (None waits as long as the transport does).
        """

    # ------------------------------------------------------------------ queue facade
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put one item. Blocks while the queue is full; `queue.Full` at the timeout."""
        self.queue_instance.put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return one item. Blocks while empty; `queue.Empty` at the timeout."""
        return self.queue_instance.get(block, timeout)

    def put_nowait(self, item: Any) -> None:
        """Put one item without blocking; `queue.Full` when there is no room."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """Get one item without blocking; `queue.Empty` when there is none."""
        return self.get(block=False)

    def qsize(self) -> int:
        """Approximate number of records queued (a batch counts its records, see `WeightedItem`)."""
        size: int = self.queue_instance.qsize()
        return size

    def empty(self) -> bool:
        """True when the queue holds no item (approximate, like `queue.Queue.empty`)."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True when a bounded queue holds `maxsize` records or more (approximate)."""
        return self.maxsize > 0 and self.qsize() >= self.maxsize

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        """Put every item of `items`, in order.

        Blocks while the queue is full. With a timeout, raises `BatchFull`
        (a `queue.Full`) whose `accepted` says how many leading items were put
        before the time ran out; those stay queued. Subclasses override this
        with a real batch operation; this default puts one item at a time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for accepted, item in enumerate(items):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self.put(item, True, remaining)
            except queue.Full:
                raise BatchFull(accepted) from None

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Return between 1 and `max_items` items, oldest first.

        Blocks until at least one item is there; raises `queue.Empty` at the
        timeout. Never waits for more once it has one.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        items = [self.get(True, timeout)]
        while len(items) < max_items:
            try:
                items.append(self.get(block=False))
            except queue.Empty:
                break
        return items

    # ------------------------------------------------------------------ serialization
    def _config(self) -> dict[str, Any]:
        """Type-specific configuration added to `to_dict()` (constructor kwargs)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Identity and configuration as a JSON-safe dict (never the live queue)."""
        return {
            "queue_type": self.queue_type,
            "queue_id": self.queue_id,
            "maxsize": self.maxsize,
            "metadata": dict(self.metadata),
            **self._config(),
        }

    def to_json(self) -> str:
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseQueueDescriptor:
        """Rebuild a descriptor of this class from `to_dict()` output.

        Raises `TypeError` for a non-dict and `ValueError` naming what is wrong
        with a malformed one.
        """
        if not isinstance(data, dict):
            raise TypeError(f"descriptor data must be a dict, got {type(data).__name__}")
        if data.get("queue_type") != cls.queue_type:
            raise ValueError(
                f"descriptor data has queue_type {data.get('queue_type')!r}, "
                f"{cls.__name__} needs {cls.queue_type!r}"
            )
        if "queue_id" not in data:
            raise ValueError("descriptor data has no 'queue_id'")
        kwargs = {k: v for k, v in data.items() if k != "queue_type"}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"descriptor data does not fit {cls.__name__}: {exc}") from None

    def to_serializable_descriptor(self) -> BaseQueueDescriptor:
        """A copy with the same identity and no live queue, safe to pickle anywhere."""
        return self.clone(new_queue_id=self.queue_id)

    def clone(self, new_queue_id: str | None = None) -> BaseQueueDescriptor:
        """A new lazy descriptor of the same type and configuration.

        It gets a fresh unique id unless `new_queue_id` is given; it never
        carries the queue instance.
        """
        data = self.to_dict()
        data["queue_id"] = new_queue_id or _new_queue_id()
        return type(self).from_dict(data)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_queue"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ identity
    def _identity(self) -> tuple[Any, ...]:
        # Cached: identity never changes, and descriptors are dict keys on service hot paths.
        identity = self.__dict__.get("_identity_cache")
        if identity is None:
            identity = (self.queue_type, self.queue_id, self.maxsize, json.dumps(self._config(), sort_keys=True))
            self.__dict__["_identity_cache"] = identity
        return identity

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseQueueDescriptor):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        config = "".join(f", {k}={v!r}" for k, v in self._config().items())
        state = "attached" if self.is_initialized() else "lazy"
        return (
            f"{type(self).__name__}(queue_id={self.queue_id!r}, maxsize={self.maxsize}"
            f"{config}, {state})"
        )


def register_descriptor_type(queue_type: str, module: str) -> None:
    """Name the module that defines `queue_type`, imported on first resolve.

    Lets transports whose modules import heavy dependencies (Ray, ZeroMQ)
    register without being imported by `import sage.kernel`.
    """
    _LAZY_TYPES[queue_type] = module


_LAZY_TYPES: dict[str, str] = {}


def resolve_descriptor(data: dict[str, Any]) -> BaseQueueDescriptor:
    """Rebuild any descriptor from its `to_dict()` output, by `queue_type`.

    Raises `TypeError` when `data` is not a dict and `ValueError` naming the
    problem when the type is unknown or the dict is malformed.
    """
    if not isinstance(data, dict):
        raise TypeError(f"resolve_descriptor needs a dict, got {type(data).__name__}")
    missing = [k for k in ("queue_type", "queue_id") if k not in data]
    if missing:
        raise ValueError(f"descriptor dict is missing {', '.join(map(repr, missing))}: {data!r}")
    queue_type = data["queue_type"]
    if not isinstance(queue_type, str):
        raise ValueError(f"descriptor queue_type must be a string, got {type(queue_type).__name__}")
    cls = _DESCRIPTOR_TYPES.get(queue_type)
    if cls is None and queue_type in _LAZY_TYPES:
        import importlib

        importlib.import_module(_LAZY_TYPES[queue_type])
        cls = _DESCRIPTOR_TYPES.get(queue_type)
    if cls is None:
        known = sorted(set(_DESCRIPTOR_TYPES) | set(_LAZY_TYPES))
        raise ValueError(f"unknown queue_type {queue_type!r}; known types: {', '.join(known)}")
    return cls.from_dict(data)
