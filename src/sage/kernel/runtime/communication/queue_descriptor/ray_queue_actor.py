"""One Ray queue: the async actor that holds it and the client that calls it.

Imports Ray at load time; `ray_queue_descriptor` imports it only once a descriptor first
touches Ray, so `import sage.kernel` stays free of Ray.

Batches cross the wire pickled once, as one bytes object: the client pickles a batch
with the C pickler (cloudpickle where pickling by value is needed, as Ray itself would;
the `cloudpickle` package that ships functions to the actors, not Ray's copy of it, so a
class shipped by value is one class in each process: an `except` clause still matches),
the actor stores ranges of those bytes without unpickling them, and the consuming client
unpickles. Handing Ray a list of objects instead costs several times more per item
(Ray's serializer visits each one) and makes the actor unpickle and re-pickle it.
"""

from __future__ import annotations

import asyncio
import collections
import pickle
import queue
from typing import Any

import cloudpickle
import ray

from .base_queue_descriptor import BatchFull, WeightedItem, effective_timeout, item_weight

Chunk = tuple[bytes, int, int]
"""Items `start:stop` of the pickled batch `blob`: (blob, start, stop)."""

Stored = tuple[bytes, int, int, list[int]]
"""A queued chunk and the weights of every item of its blob (indexed like the items)."""


# ---------------------------------------------------------------------------- actor side
async def _wait(condition: asyncio.Condition, deadline: float | None) -> bool:
    """Wait for a notify on `condition` (lock held); False once `deadline` has passed."""
    if deadline is None:
        await condition.wait()
        return True
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        return False
    try:
        await asyncio.wait_for(condition.wait(), remaining)
    except TimeoutError:
        return False
    return True


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else asyncio.get_running_loop().time() + timeout


class QueueActor:
    """A FIFO of pickled batches, counted in records, run as an async Ray actor.

    `maxsize` counts records (0 = unbounded): the client sends each item's
    weight (see `item_weight`: a batch counts its records) beside the pickled
    items, and an item goes in when it fits, when the queue is empty, or when
    it is an `overflow` item (the client lists those), as in every other queue
    of the project. Blocked puts and gets wait here, on the actor's
    event loop, with their timeout: a blocked caller costs one pending remote
    call and no polling. Every state change wakes all waiters of the other side
    and they re-check, so a waiter that times out never swallows a wake-up meant
    for another. The actor never unpickles an item: it needs no user code.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._chunks: collections.deque[Stored] = collections.deque()
        self._size = 0
        lock = asyncio.Lock()
        self._not_empty = asyncio.Condition(lock)
        self._not_full = asyncio.Condition(lock)

    async def put_many(self, blob: bytes, weights: list[int], timeout: float | None,
                       overflow: list[int] | None = None) -> int:
        """Queue the items pickled in `blob` (`weights[i]` the weight of item i), in order, as room frees up.

        The items at the positions `overflow` lists go in whatever the queue
        holds. Returns how many leading items were queued: all of them unless
        the timeout passed first (None waits for room forever, 0 takes the
        room there is now).
        """
        count = len(weights)
        done = 0
        deadline = _deadline(timeout)
        maxsize = self._maxsize
        always = frozenset(overflow or ())
        async with self._not_full:
            while True:
                start = done
                while done < count:
                    weight = weights[done]
                    if maxsize and self._size and self._size + weight > maxsize and done not in always:
                        break
                    self._size += weight
                    done += 1
                if done > start:
                    self._chunks.append((blob, start, done, weights))
                    self._not_empty.notify_all()
                if done == count or not await _wait(self._not_full, deadline):
                    return done

    async def get_many(self, max_items: int, timeout: float | None) -> list[Chunk]:
        """Remove 1 to `max_items` items, oldest first, as chunks; [] if the timeout passed first.

        Takes whole chunks while they fit in `max_items` (so a batch is unpickled
        once); only a first chunk longer than `max_items` is split.
        """
        deadline = _deadline(timeout)
        async with self._not_empty:
            while not self._chunks:
                if not await _wait(self._not_empty, deadline):
                    return []
            chunks = self._chunks
            blob, start, stop, weights = chunks[0]
            if stop - start > max_items:
                chunks[0] = (blob, start + max_items, stop, weights)
                taken: list[Chunk] = [(blob, start, start + max_items)]
                freed = sum(weights[start:start + max_items])
            else:
                taken, count, freed = [], 0, 0
                while chunks and count + chunks[0][2] - chunks[0][1] <= max_items:
                    blob, start, stop, weights = chunks.popleft()
                    taken.append((blob, start, stop))
                    count += stop - start
                    freed += sum(weights[start:stop])
            self._size -= freed
            if self._maxsize:
                self._not_full.notify_all()
            return taken

    async def qsize(self) -> int:
        """Number of records queued."""
        return self._size


RemoteQueueActor = ray.remote(num_cpus=0)(QueueActor)


# ---------------------------------------------------------------------------- client side
def _dumps(items: list[Any]) -> bytes:
    """Pickle a batch with the C pickler, or with cloudpickle where it must pickle by value."""
    try:
        blob = pickle.dumps(items, pickle.HIGHEST_PROTOCOL)
    except Exception:  # lambdas, local and dynamic classes: only cloudpickle takes them
        blob = cloudpickle.dumps(items, pickle.HIGHEST_PROTOCOL)
    else:
        if b"__main__" in blob:
            # The C pickler names __main__ objects by reference; a Ray worker's __main__ is
            # not the driver's script. cloudpickle ships them by value, as Ray would.
            blob = cloudpickle.dumps(items, pickle.HIGHEST_PROTOCOL)
    return blob


def _overflowing(items: list[Any]) -> list[int] | None:
    """The positions of `overflow` items (see `WeightedItem`), None when there are none."""
    found = [i for i, item in enumerate(items) if isinstance(item, WeightedItem) and item.overflow]
    return found or None


def _loads(chunks: list[Chunk]) -> list[Any]:
    items: list[Any] = []
    last_blob: bytes | None = None
    batch: list[Any] = []
    for blob, start, stop in chunks:
        if blob is not last_blob:  # ranges of one batch arrive as one object: unpickle it once
            # Bytes from our own queue actor, inside the Ray cluster's trust domain (Ray
            # unpickles every argument and result the same way).
            batch = pickle.loads(blob)
            last_blob = blob
        items.extend(batch if start == 0 and stop == len(batch) else batch[start:stop])
    return items


class RayQueueClient:
    """One process's handle on a queue actor, with `queue.Queue`-style calls.

    Every call is one remote call. Waits happen on the actor with the given
    timeout; there is no client-side timeout that could abandon items the actor
    already moved. A dead queue actor (closed, or lost) raises
    `ray.exceptions.RayActorError`.
    """

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put one item; blocks while full, `queue.Full` at the timeout."""
        weights = [item_weight(item)]
        accepted = self._actor.put_many.remote(_dumps([item]), weights, effective_timeout(block, timeout),
                                               _overflowing([item]))
        if not ray.get(accepted):
            raise queue.Full

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return one item; blocks while empty, `queue.Empty` at the timeout."""
        chunks: list[Chunk] = ray.get(self._actor.get_many.remote(1, effective_timeout(block, timeout)))
        if not chunks:
            raise queue.Empty
        return _loads(chunks)[0]

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        """Put all `items` in order in one remote call; `BatchFull(accepted)` at the timeout."""
        if not items:
            return
        weights = [item_weight(item) for item in items]
        accepted: int = ray.get(self._actor.put_many.remote(_dumps(items), weights, effective_timeout(True, timeout),
                                                            _overflowing(items)))
        if accepted < len(items):
            raise BatchFull(accepted)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """1 to `max_items` items in one remote call; `queue.Empty` at the timeout."""
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        chunks: list[Chunk] = ray.get(self._actor.get_many.remote(max_items, effective_timeout(True, timeout)))
        if not chunks:
            raise queue.Empty
        return _loads(chunks)

    def qsize(self) -> int:
        """Number of records queued (one remote call)."""
        size: int = ray.get(self._actor.qsize.remote())
        return size
