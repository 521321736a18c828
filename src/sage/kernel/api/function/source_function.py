"""Functions that start a stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .base_function import BaseFunction


class BatchFunction(BaseFunction):
    """A bounded source: `execute()` returns the next record, `None` ends the stream."""

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute() must return the next record or None")


class SourceFunction(BaseFunction):
    """A source, possibly unbounded: `execute()` returns a record, `None` when
    nothing is there now (the task waits briefly and asks again), or a
    `StopSignal` to end the stream. `job.stop()` also ends it.
    """

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute() must return a record, None or a StopSignal")


class IterableBatchFunction(BatchFunction):
    """Emits the items of an iterable; parallel instances share a sequence by index.

    Instance `i` of `p` emits items `i, i+p, i+2p, ...` of a list, tuple or
    range, so a parallel source emits every item exactly once. `None` items
    are emitted too (the iterable's end, not a `None`, ends the stream).
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self.position = 0
        """How many records of this instance's share were emitted (its state in a checkpoint)."""

    def get_state(self) -> int:
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state

    def share(self) -> Iterable[Any]:
        """This instance's share of the items, in order: all of them, or a slice of a sequence."""
        parallelism = self.ctx.parallelism if self.ctx is not None else 1
        if parallelism > 1:
            share: Iterable[Any] = self._items[self.ctx.parallel_index :: parallelism]  # type: ignore[index]
            return share
        return self._items

    def iterator(self) -> Iterator[Any]:
        """This instance's share of the items, one at a time (from `position` on)."""
        share = iter(self.share())
        for _ in range(self.position):  # a restored sequence; iterators cannot be restored (refused at submit)
            next(share, None)
        for item in share:
            self.position += 1
            yield item

    def runs(self, size: int) -> Iterator[Sequence[Any]] | None:
        """This instance's share in slices of `size` items when it is a sequence (list, tuple,
        range), else None. Slices let the source check for a stop once per slice, not per item."""
        share = self.share()
        if not isinstance(share, Sequence):
            return None
        return self._runs(share, size)

    def _runs(self, share: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
        # `position` moves as each run is handed out: once the task has sent a run, the next
        # checkpoint counts it as emitted.
        while self.position < len(share):
            run = share[self.position : self.position + size]
            self.position += len(run)
            yield run
