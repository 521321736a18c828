"""A link from a task to one downstream task instance."""

from __future__ import annotations

from typing import Any

from ..queue_descriptor import BaseQueueDescriptor

DATA = "data"
"""An ordinary edge: the sender's stop signal ends the channel."""
LOOP = "loop"
"""An edge between two operators of one feedback loop: its records count toward the loop's
termination, and the loop ends it (no stop signal travels on it)."""
FEEDBACK = "feedback"
"""A loop edge that closes the loop (from the stream given to `fill_future`): its records are sent
as `FeedbackBatch`es, which never wait for room."""
EDGES = (DATA, LOOP, FEEDBACK)


class Connection:
    """The downstream instance `target_name` (parallel index `parallel_index`
    of broadcast group `broadcast_index`), reached through `queue_descriptor`;
    packets sent on it carry `target_input_index`. `edge` says what kind of
    edge it belongs to (`DATA`, `LOOP` or `FEEDBACK`).
    """

    __slots__ = ("broadcast_index", "parallel_index", "target_name", "queue_descriptor", "target_input_index",
                 "edge")

    def __init__(
        self,
        broadcast_index: int,
        parallel_index: int,
        target_name: str,
        queue_descriptor: BaseQueueDescriptor,
        target_input_index: int = 0,
        edge: str = DATA,
    ) -> None:
        if edge not in EDGES:
            raise ValueError(f"edge must be one of {', '.join(EDGES)}, got {edge!r}")
        self.broadcast_index = broadcast_index
        self.parallel_index = parallel_index
        self.target_name = target_name
        self.queue_descriptor = queue_descriptor
        self.target_input_index = target_input_index
        self.edge = edge

    def get_buffer_load(self) -> float:
        """How full the target's queue is, `qsize/maxsize` in [0, 1]; 0.0 when unbounded.

        Approximate (the queue moves while it is read); for a remote queue it
        costs a round trip.
        """
        maxsize = self.queue_descriptor.maxsize
        if maxsize <= 0:
            return 0.0
        return min(1.0, self.queue_descriptor.qsize() / maxsize)

    def describe(self) -> dict[str, Any]:
        """Plain-data description for routing info and debugging."""
        return {
            "broadcast_index": self.broadcast_index,
            "parallel_index": self.parallel_index,
            "target_name": self.target_name,
            "target_input_index": self.target_input_index,
            "queue_id": self.queue_descriptor.queue_id,
            "queue_type": self.queue_descriptor.queue_type,
            "edge": self.edge,
        }

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def __repr__(self) -> str:
        return (
            f"Connection({self.target_name!r}, group={self.broadcast_index}, "
            f"index={self.parallel_index}, input={self.target_input_index}, queue={self.queue_descriptor.queue_id!r}"
            + (f", edge={self.edge}" if self.edge != DATA else "") + ")"
        )
