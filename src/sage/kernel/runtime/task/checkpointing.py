"""One task's part in checkpoints: injecting or aligning barriers, snapshots, commit notifications.

A source injects barrier n between two records when the coordinator asks
(`trigger`); so does the entry of a loop whose inputs from outside have ended
(the loop keeps running and checkpointing after its sources are done). A
stream task aligns: when barrier n arrives on a channel, that channel is held
(its later items wait in memory, in order) until barrier n has arrived on
every channel that has not ended; then the task snapshots its operator's
state, sends the part to the coordinator, forwards barrier n on all its
connections and goes on with the held items. At end of stream the task sends
its final state. Commit notifications (`notify`) reach the function's
`on_checkpoint_complete` on the task's own thread, between two batches; a
function that has that hook keeps its task alive after end of stream until the
checkpoint holding its final state is complete (so a transactional sink
commits its last records).

While aligning, the items of held channels stay in memory: how many depends on
how far ahead of the others those channels are.

Loops: a task that reads a feedback edge cannot wait for the barrier on it
(the barrier comes round the loop only after this task forwarded it). It
aligns its other channels, snapshots and forwards the barrier as usual, then
keeps a copy of every record that arrives on a feedback channel until the
barrier arrives there too: those records were in flight on the loop's back
edge at the cut. Its part, sent then, holds them (under "fed_back"), and a
restored task processes them first (Chandy-Lamport's channel state, as in
Flink's loop snapshots). A feedback channel whose barrier came before the
snapshot is held like any aligned channel.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from ..checkpoint.alignment import Aligned, Aligner
from ..checkpoint.messages import EndOfInput, FinalPart, SnapshotPart
from ..checkpoint.snapshot import decode, encode
from ..communication.router import Batch, CheckpointBarrier
from .delivery import PUT_RETRY, put_control

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..operator import Operator



@dataclasses.dataclass
class _FedBackLog:
    """A snapshot waiting for the barrier to come back round the loop, and the records that came meanwhile."""

    checkpoint_id: int
    state: bytes
    alignment_seconds: float
    waiting: set[str]
    records: list[bytes] = dataclasses.field(default_factory=list)


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
        loop = ctx.loop
        self.feedback_channels = loop.feedback_upstreams if loop is not None else frozenset()
        self._log: _FedBackLog | None = None
        self._replay: list[bytes] = []

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
        data = self.ctx.restored_state
        if data is None:
            return
        state = decode(data)
        self._replay = state.pop("fed_back", [])
        operator.restore_state(state)
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        if commit is not None and self.ctx.restored_checkpoint:
            commit(self.ctx.restored_checkpoint)

    def take_replay(self) -> list[tuple[int, list[Any], list[Any] | None]]:
        """The records that were on the loop's feedback edges at the restored checkpoint, as
        (input index, payloads, keys) batches, to process before anything else (once)."""
        replay, self._replay = self._replay, []
        return [decode(entry) for entry in replay]

    # ------------------------------------------------------------------ the task's own thread
    def deliver_completions(self, operator: Operator) -> None:
        """Call the function's `on_checkpoint_complete` for every completion noted since the last call."""
        commit = getattr(operator.function, "on_checkpoint_complete", None)
        while self._completions:
            checkpoint_id = self._completions.popleft()
            if commit is not None:
                commit(checkpoint_id)

    def inject_requested(self, operator: Operator, open_channels: set[str] | None = None) -> None:
        """Between two records or batches: snapshot and forward every barrier asked for since last time.

        A source (`open_channels` None) always injects. A stream task is
        asked only when it reads a feedback edge (it may be where a loop
        starts once its sources have ended): it injects only when no input
        channel it aligns is open (its barrier cannot come from upstream) and
        no alignment is under way; else the request waits, and goes once a
        barrier of that checkpoint has passed.
        """
        requests = self._requests
        while requests:
            checkpoint_id = requests[0]
            if checkpoint_id <= self.aligner.last_checkpoint:
                requests.popleft()
                continue
            if open_channels or (open_channels is not None and self.aligner.aligning is not None):
                return
            requests.popleft()
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
        self._snapshot_and_forward(operator, aligned.checkpoint_id, aligned.seconds, aligned.arrived)
        return aligned.held

    def _snapshot_and_forward(self, operator: Operator, checkpoint_id: int, alignment: float,
                              arrived: frozenset[str] = frozenset()) -> None:
        self.ctx.checkpoint_id = checkpoint_id
        state = encode(operator.snapshot_state())
        self.alignment_seconds += alignment
        waiting = set(self.feedback_channels - arrived)
        if waiting:
            self._log = _FedBackLog(checkpoint_id, state, alignment, waiting)  # the part goes once they all came
        else:
            self._send(SnapshotPart(checkpoint_id, self.ctx.name, state, alignment))
        self.ctx.router.send_control(CheckpointBarrier(checkpoint_id, self.ctx.name))

    # ------------------------------------------------------------------ loops
    def log_fed_back(self, batch: Batch) -> None:
        """Keep a copy of `batch` if it came on a feedback channel whose barrier the snapshot waits for."""
        log = self._log
        if log is not None and batch.source in log.waiting:
            log.records.append(encode((batch.input_index, batch.payloads, batch.keys)))

    def feedback_barrier(self, barrier: CheckpointBarrier) -> bool:
        """A barrier came on a feedback channel: True when it was the one a snapshot waited for there
        (the part goes once every feedback channel delivered it); False: align it as usual."""
        log = self._log
        if log is None or barrier.checkpoint_id != log.checkpoint_id or barrier.source not in log.waiting:
            return False
        log.waiting.discard(str(barrier.source))
        if not log.waiting:
            self._send_logged()
        return True

    def _send_logged(self) -> None:
        """Send the part of the snapshot waiting for the loop, with the records its feedback channels held."""
        log = self._log
        assert log is not None
        self._log = None
        state = decode(log.state)
        state["fed_back"] = log.records
        self._send(SnapshotPart(log.checkpoint_id, self.ctx.name, encode(state), log.alignment_seconds))

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
        if self._log is not None:
            # The loop ended: nothing is left on its feedback edges, so what was logged is all there was.
            self._send_logged()
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
        put_control(control, part, self.ctx.cancel_event, f"{self.ctx.name}: sending a checkpoint part")
