"""What tasks tell the checkpoint coordinator, through the job's control queue (a driver queue).

`SnapshotPart` carries one task's state for checkpoint `checkpoint_id`, taken
when the barrier had arrived on all its open channels. `FinalPart` carries the
state a task ended with: it stands for that task in every later checkpoint,
since a finished task sees no more barriers. `EndOfInput` says a source has
emitted its last record and asks for a checkpoint at once (its barrier will
follow that record).
"""

from __future__ import annotations

from typing import Any


class SnapshotPart:
    """Task `task`'s state for checkpoint `checkpoint_id`, and how long it held channels to align."""

    __slots__ = ("checkpoint_id", "task", "state", "alignment_seconds")

    def __init__(self, checkpoint_id: int, task: str, state: bytes, alignment_seconds: float) -> None:
        self.checkpoint_id = checkpoint_id
        self.task = task
        self.state = state
        self.alignment_seconds = alignment_seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return (SnapshotPart, (self.checkpoint_id, self.task, self.state, self.alignment_seconds))

    def __repr__(self) -> str:
        return f"SnapshotPart({self.checkpoint_id}, {self.task!r}, {len(self.state)} bytes)"


class EndOfInput:
    """Source `task` has emitted its last record: it waits for a checkpoint behind it before it ends."""

    __slots__ = ("task",)

    def __init__(self, task: str) -> None:
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        return (EndOfInput, (self.task,))

    def __repr__(self) -> str:
        return f"EndOfInput({self.task!r})"


class FinalPart:
    """The state task `task` ended its stream with; it saw barriers up to `last_barrier` (0: none)."""

    __slots__ = ("task", "state", "last_barrier")

    def __init__(self, task: str, state: bytes, last_barrier: int) -> None:
        self.task = task
        self.state = state
        self.last_barrier = last_barrier

    def __reduce__(self) -> tuple[Any, ...]:
        return (FinalPart, (self.task, self.state, self.last_barrier))

    def __repr__(self) -> str:
        return f"FinalPart({self.task!r}, {len(self.state)} bytes, after barrier {self.last_barrier})"
