"""Barrier alignment over a reader's input channels (a task's, or the driver's for collect()).

When barrier n arrives on a channel, that channel is held: its later items
wait here, in order, until barrier n has arrived on every channel that has
not ended. Then the alignment is complete: the reader snapshots, forwards
the barrier, and processes the held items before anything newer.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Aligned:
    """A complete alignment: the checkpoint, how long channels were held, the items they held, and the
    channels that delivered the barrier (channels the alignment did not wait for may be among them)."""

    checkpoint_id: int
    seconds: float
    held: list[Any]
    arrived: frozenset[str]


class Aligner:
    """The alignment state of one reader. Not thread-safe: it belongs to the reading thread."""

    def __init__(self, last_checkpoint: int = 0) -> None:
        self.last_checkpoint = last_checkpoint
        """The last checkpoint aligned (or restored from): its barriers, late or replayed, are ignored."""
        self.aligning: int | None = None
        """The checkpoint whose barriers are being aligned, None when none is."""
        self._arrived: set[str] = set()
        self._held: list[Any] = []
        self._started = 0.0

    def holds(self, source: str | None) -> bool:
        """True when items from channel `source` must wait (it delivered the barrier being aligned)."""
        return self.aligning is not None and source in self._arrived

    def hold(self, item: Any) -> None:
        self._held.append(item)

    def barrier(self, checkpoint_id: int, source: str | None, open_channels: set[str]) -> Aligned | None:
        """Barrier `checkpoint_id` arrived from `source`; the complete alignment, or None while it goes on."""
        if checkpoint_id <= self.last_checkpoint:
            return None
        if self.aligning is None:
            self.aligning = checkpoint_id
            self._arrived = set()
            self._started = time.monotonic()
        self._arrived.add(str(source))
        return self.check(open_channels)

    def check(self, open_channels: set[str]) -> Aligned | None:
        """Complete the alignment in progress if every open channel delivered its barrier (a channel
        that ended needs none); else None."""
        if self.aligning is None or not self._arrived >= open_channels:
            return None
        aligned = Aligned(self.aligning, time.monotonic() - self._started, self._held, frozenset(self._arrived))
        self.last_checkpoint = self.aligning
        self.aligning, self._arrived, self._held = None, set(), []
        return aligned
