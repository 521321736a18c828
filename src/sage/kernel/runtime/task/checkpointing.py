"""One task's part in checkpoints: injecting or aligning barriers, snapshots, commit notifications.

A source injects barrier n between two records when the coordinator asks
(`trigger`). A stream task aligns: when barrier n arrives on a channel, that
channel is held (its later items wait in memory, in order) until barrier n has
arrived on every channel that has not ended; then the task snapshots its
operator's state, sends the part to the coordinator, forwards barrier n on all
its connections and goes on with the held items. At end of stream the task
sends its final state. Commit notifications (`notify`) reach the function's
`on_checkpoint_complete` on the task's own thread, between two batches; a
function that has that hook keeps its task alive after end of stream until the
checkpoint holding its final state is complete (so a transactional sink
commits its last records).

While aligning, the items of held channels stay in memory: how many depends on
how far ahead of the others those channels are.
"""

from __future__ import annotations

import collections
import queue
import threading
from typing import TYPE_CHECKING, Any

from ..checkpoint.alignment import Aligned, Aligner
from ..checkpoint.messages import EndOfInput, FinalPart, SnapshotPart
from ..checkpoint.snapshot import decode, encode
from ..communication.errors import SendCancelled
from ..communication.router import CheckpointBarrier

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..operator import Operator

PUT_RETRY = 0.1
"""Seconds between cancel checks while a part waits for room in the control queue."""


class TaskCheckpoints:
    """Checkpoint duties of one task (inactive when the job takes no checkpoints: `ctx.control_qd` is None)."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.active = ctx.control_qd is not None
        self.aligner = Aligner(ctx.restored_checkpoint or 0)
        self.alignment_seconds = 0.0
        self._requests: collections.deque[int] = collections.deque()
        self._completions: collections.deque[int] = collections.deque()
        self._completed = threading.Event()
        """Set on every trigger and completion: a waiting task wakes at once."""

    @property
    def last_barrier(self) -> int:
        """The last checkpoint this task took part in (or was restored from); 0 for none."""
        return self.aligner.last_checkpoint

    # ------------------------------------------------------------------ calls from other threads
    def trigger(self, checkpoint_id: int) -> None:
        """Inject barrier `checkpoint_id` at the source's next safe point (sources only)."""
        self._requests.append(checkpoint_id)
        self._completed.set()

    def notify(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` is complete; the function hears of it between two batches."""
        self._completions.append(checkpoint_id)
        self._completed.set()

    # ------------------------------------------------------------------ restore
    def restore(self, operator: Operator) -> None:
        """Give the operator the state of the restored checkpoint (if any), then let a transactional
        function commit what it had staged for it."""
        state = self.ctx.restored_state
        if state is None:
            return
        operator.restore_state(decode(state))
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        if commit is not None and self.ctx.restored_checkpoint:
            commit(self.ctx.restored_checkpoint)

    # ------------------------------------------------------------------ the task's own thread
    def deliver_completions(self, operator: Operator) -> None:
        """Call the function's `on_checkpoint_complete` for every completion noted since the last call."""
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        while self._completions:
            checkpoint_id = self._completions.popleft()
            if commit is not None:
                commit(checkpoint_id)

    def inject_requested(self, operator: Operator) -> None:
        """A source between two records: snapshot and forward every barrier asked for since last time."""
        while self._requests:
            checkpoint_id = self._requests.popleft()
            if checkpoint_id > self.aligner.last_checkpoint:
                self.aligner.last_checkpoint = checkpoint_id
                self._snapshot_and_forward(operator, checkpoint_id, 0.0)

    def on_barrier(self, operator: Operator, barrier: CheckpointBarrier, open_channels: set[str]) -> list[Any]:
        """Note `barrier` from its channel; once it came on every open channel, snapshot and forward it.

        Returns the held items to process next (in their order), empty while
        the alignment goes on.
        """
        return self._done(operator, self.aligner.barrier(barrier.checkpoint_id, barrier.source, open_channels))

    def check_alignment(self, operator: Operator, open_channels: set[str]) -> list[Any]:
        """A channel ended: complete the alignment in progress if it waited only for that one."""
        return self._done(operator, self.aligner.check(open_channels))

    def _done(self, operator: Operator, aligned: Aligned | None) -> list[Any]:
        if aligned is None:
            return []
        self._snapshot_and_forward(operator, aligned.checkpoint_id, aligned.seconds)
        return aligned.held

    def _snapshot_and_forward(self, operator: Operator, checkpoint_id: int, alignment: float) -> None:
        self.ctx.checkpoint_id = checkpoint_id
        state = encode(operator.snapshot_state())
        self.alignment_seconds += alignment
        self._send(SnapshotPart(checkpoint_id, self.ctx.name, state, alignment))
        self.ctx.router.send_control(CheckpointBarrier(checkpoint_id, self.ctx.name))

    def end_of_input(self, operator: Operator) -> bool:
        """A source emitted its last record: ask for a checkpoint, inject its barrier (it follows that
        record), and wait until a checkpoint from then on is complete; then downstream has processed every
        record of this source and the source may end. Returns False when the job was cancelled first."""
        self._send(EndOfInput(self.ctx.name))
        covering: int | None = None
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        cancel = self.ctx.cancel_event
        while not cancel.is_set():
            self._completed.wait(PUT_RETRY)
            self._completed.clear()
            while self._requests:
                checkpoint_id = self._requests.popleft()
                if checkpoint_id > self.aligner.last_checkpoint:
                    self.aligner.last_checkpoint = checkpoint_id
                    self._snapshot_and_forward(operator, checkpoint_id, 0.0)
                    covering = covering or checkpoint_id
            while self._completions:
                checkpoint_id = self._completions.popleft()
                if commit is not None:
                    commit(checkpoint_id)
                if covering is not None and checkpoint_id >= covering:
                    return True
        return False

    def send_final(self, operator: Operator) -> None:
        """End of stream: send the state the task ends with (it stands for the task in later checkpoints).

        The function sees `ctx.checkpoint_id` = the first checkpoint that can
        hold this state (one after the last barrier it saw).
        """
        self.ctx.checkpoint_id = self.last_barrier + 1
        self._send(FinalPart(self.ctx.name, encode(operator.snapshot_state()), self.last_barrier))

    def wait_for_final_commit(self, operator: Operator) -> bool:
        """Keep a transactional function's task until the checkpoint with its final state is complete.

        Returns False when the job was cancelled first.
        """
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        if commit is None:
            return True
        final = self.last_barrier + 1
        cancel = self.ctx.cancel_event
        while not cancel.is_set():
            self._completed.wait(PUT_RETRY)
            self._completed.clear()
            while self._completions:
                checkpoint_id = self._completions.popleft()
                commit(checkpoint_id)
                if checkpoint_id >= final:
                    return True
        return False

    def _send(self, part: SnapshotPart | FinalPart | EndOfInput) -> None:
        control = self.ctx.control_qd
        assert control is not None, "only a checkpointing task sends parts"
        cancel = self.ctx.cancel_event
        while True:
            if cancel.is_set():
                raise SendCancelled(f"{self.ctx.name}: sending a checkpoint part cancelled")
            try:
                control.put(part, timeout=PUT_RETRY)
                return
            except queue.Full:
                continue
