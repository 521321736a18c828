"""The default transport: an in-process `queue.Queue` shared by queue id."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from .base_queue_descriptor import BaseQueueDescriptor, BatchFull, WeightedItem, effective_timeout, item_weight


class BatchQueue(queue.Queue[Any]):
    """A `queue.Queue` with batch operations that take the lock once per batch.

    Capacity counts records, not items: a batch item (`WeightedItem`) counts
    its records, any other item one. An item goes in when it fits (the
    records queued plus its own stay within `maxsize`), when the queue is
    empty (so an item heavier than `maxsize` still gets through, alone), or
    when it is an `overflow` item (it never waits; see `WeightedItem`). A
    bounded queue thus bounds memory the same way whether records arrive one
    by one or in batches. `qsize()` is the record count; `len(q.queue)` the
    item count.
    """

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.weight = 0

    def _qsize(self) -> int:
        return self.weight

    def _put(self, item: Any) -> None:
        self.queue.append(item)
        self.weight += item.weight if isinstance(item, WeightedItem) else 1

    def _get(self) -> Any:
        item = self.queue.popleft()
        self.weight -= item.weight if isinstance(item, WeightedItem) else 1
        return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put one item; blocks until it fits, `queue.Full` at the timeout (see the class docs)."""
        try:
            self.put_many([item], effective_timeout(block, timeout))
        except BatchFull:
            raise queue.Full from None

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        """Put all `items` in order, each as soon as it fits.

        Blocks while the next item does not fit; raises `BatchFull` at the
        timeout with the number of leading items already queued (they stay
        queued).
        """
        n = len(items)
        if n == 0:
            return
        maxsize = self.maxsize
        with self.not_full:
            if maxsize <= 0:
                self.queue.extend(items)
                self.weight += sum(map(item_weight, items))
                self.unfinished_tasks += n
                self.not_empty.notify(n)
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            done = 0
            put = self._put
            while done < n:
                start = done
                while done < n:
                    item = items[done]
                    weight = item.weight if isinstance(item, WeightedItem) else 1
                    if self.weight and self.weight + weight > maxsize and not (
                            isinstance(item, WeightedItem) and item.overflow):
                        break
                    put(item)
                    done += 1
                if done > start:
                    self.unfinished_tasks += done - start
                    # One waiter per item, as that many single puts would wake: with
                    # notify() a second blocked consumer could sleep beside queued items.
                    self.not_empty.notify(done - start)
                if done == n:
                    return
                if deadline is None:
                    self.not_full.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BatchFull(done)
                    self.not_full.wait(remaining)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        """Return 1 to `max_items` items; blocks until one is there, `queue.Empty` at the timeout."""
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        with self.not_empty:
            if not self.queue:
                if timeout is None:
                    while not self.queue:
                        self.not_empty.wait()
                else:
                    deadline = time.monotonic() + timeout
                    while not self.queue:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise queue.Empty
                        self.not_empty.wait(remaining)
            return self._take(max_items)

    def _take(self, max_items: int) -> list[Any]:
        """Remove up to `max_items` items, oldest first, and wake the producers they made room for (lock held)."""
        q = self.queue
        if max_items >= len(q):
            items = list(q)
            q.clear()
            self.weight = 0
        else:
            popleft = q.popleft
            items = [popleft() for _ in range(max_items)]
            self.weight -= sum(map(item_weight, items))
        if items and self.maxsize > 0:
            # One get may free room for several blocked producers.
            self.not_full.notify_all()
        return items


_registry: dict[str, BatchQueue] = {}
_registry_lock = threading.Lock()


def _attach(queue_id: str, maxsize: int) -> BatchQueue:
    with _registry_lock:
        q = _registry.get(queue_id)
        if q is None:
            q = _registry[queue_id] = BatchQueue(maxsize)
        return q


class PythonQueueDescriptor(BaseQueueDescriptor):
    """A bounded or unbounded in-process queue for threads of one process.

    Every descriptor with the same `queue_id` in one process reaches the same
    `queue.Queue` (a process-wide registry holds it), so a descriptor rebuilt
    with `resolve_descriptor(d.to_dict())` talks to the queue `d` talks to,
    before and after first access. The queue is created with the `maxsize` of
    the first descriptor that touches it.

    Pickled into another process, the descriptor names a queue of that
    process: python queues do not cross processes (use the Ray or RPC
    transport for that).

    - `clear_cache()` / `trim()`: this descriptor forgets its reference; the
      queue stays in the registry with every item, and is reached again on
      next access.
    - `close()`: removes the queue from the registry. Items still queued stay
      reachable through descriptors that already hold the queue, and are
      dropped with it once nobody does; a later access creates a new, empty
      queue under the same id. Close a queue only when its consumers are done.
    """

    queue_type = "python"

    def _create_queue_instance(self) -> BatchQueue:
        return _attach(self.queue_id, self.maxsize)

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        self.queue_instance.put_many(items, timeout)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        items: list[Any] = self.queue_instance.get_many(max_items, timeout)
        return items

    def close(self) -> None:
        with _registry_lock:
            _registry.pop(self.queue_id, None)
        super().close()
