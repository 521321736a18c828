"""The control items a loop's instances pass each other through their input queues.

Both never wait for room in a queue (`overflow`): a task holding the token
must never block on a task that may be blocked on it.
"""

from __future__ import annotations

from typing import Any

from ..communication.queue_descriptor import WeightedItem


class LoopToken(WeightedItem):
    """The termination token of loop `loop` in round `round`, travelling the ring of its instances.

    `count` sums the record counts (loop records sent minus received) of the
    instances it has visited this round; `dirty` says one of them received
    a loop record since the token last left it.
    """

    __slots__ = ("loop", "round", "count", "dirty")

    overflow = True

    def __init__(self, loop: int, round: int, count: int = 0, dirty: bool = False) -> None:
        self.loop = loop
        self.round = round
        self.count = count
        self.dirty = dirty

    @property
    def weight(self) -> int:
        return 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (LoopToken, (self.loop, self.round, self.count, self.dirty))

    def __repr__(self) -> str:
        return f"LoopToken(loop={self.loop}, round={self.round}, count={self.count}, dirty={self.dirty})"


class LoopEnd(WeightedItem):
    """Loop `loop` is empty and will stay so: its instances finish (sent by the instance that leads it)."""

    __slots__ = ("loop",)

    overflow = True

    def __init__(self, loop: int) -> None:
        self.loop = loop

    @property
    def weight(self) -> int:
        return 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (LoopEnd, (self.loop,))

    def __repr__(self) -> str:
        return f"LoopEnd(loop={self.loop})"
