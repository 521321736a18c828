"""Results in the driver: the records a `collect` edge delivers to the process that submitted the job.

`stream.collect()` adds one more downstream edge to every instance of the
stream's operator: its router sends to a queue that the driver reads (of the
job's transport, so it works on every backend), behind the records a
`StopSignal` per instance. A `DriverReader` thread of the dispatcher takes the
batches from that queue into a `CollectedRecords` buffer, in order per
channel, until every instance has ended its stream. The job finishes only
once the driver has every record (as with Flink's collect).

Memory: until someone iterates, the buffer keeps every record (a job
submitted with `autostop=True` must be able to finish before anyone reads).
Once a reader iterates, at most `capacity` records wait in the buffer: the
reader thread stops taking from the queue, the queue fills, and the job slows
down to the reader's pace (backpressure).

With checkpoints the driver is a participant like any task: it aligns the
barriers of its channels and stages the records of each checkpoint, which
become visible once that checkpoint is complete (two-phase commit). A restart
from the last complete checkpoint then neither loses nor repeats a record.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .checkpoint.alignment import Aligned, Aligner
from .checkpoint.messages import FinalPart, SnapshotPart
from .checkpoint.snapshot import encode
from .communication.queue_descriptor import BaseQueueDescriptor
from .communication.router import Batch, CheckpointBarrier, Packet, StopSignal

READ_BATCH = 64
"""Most queue items the reader takes at once."""

READ_WAIT = 0.2
"""Seconds the reader blocks on the queue before re-checking for cancellation."""

logger = logging.getLogger(__name__)


class CollectedRecords:
    """The records of one `collect` edge in the driver, in arrival order (per channel: sent order).

    Iterate it to get the records as they arrive; iteration ends once every
    upstream instance has ended its stream, and raises the job's error when
    the job failed (`JobFailedError`) or was cancelled (`JobCancelledError`)
    before the records were complete. Iteration consumes: each record is
    handed out once. Thread-safe; several readers share the records.
    """

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.received = 0
        self._records: collections.deque[Any] = collections.deque()
        self._staged: list[Any] = []
        self._sealed: dict[int, list[Any]] = {}
        self._complete = False
        self._error: BaseException | None = None
        self._reading = False
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ the reader thread's side
    def add(self, records: list[Any], cancelled: threading.Event) -> bool:
        """Append `records` for the reader; first wait for room (see `_room`).

        Returns False (adding nothing) once `cancelled` is set or the buffer was closed.
        """
        with self._cond:
            if not self._room(cancelled):
                return False
            self._records.extend(records)
            self.received += len(records)
            self._cond.notify_all()
            return True

    def _room(self, cancelled: threading.Event) -> bool:
        """While a reader iterates and `capacity` records wait for it, wait (lock held); False once
        cancelled or closed."""
        while self._reading and len(self._records) >= self.capacity and self._error is None:
            if cancelled.is_set():
                return False
            self._cond.wait(READ_WAIT)
        return self._error is None and not cancelled.is_set()

    def stage(self, records: list[Any], cancelled: threading.Event) -> bool:
        """Keep `records` out of sight until the checkpoint they belong to is complete; first wait
        for room like `add` (the records waiting for the reader are committed ones, so the reader can
        always make room). Returns False (staging nothing) once cancelled or closed."""
        with self._cond:
            if not self._room(cancelled):
                return False
            self._staged.extend(records)
            self.received += len(records)
            return True

    def seal(self, checkpoint_id: int) -> None:
        """What was staged belongs to checkpoint `checkpoint_id` (its barriers have all arrived)."""
        with self._cond:
            self._sealed[checkpoint_id] = self._sealed.get(checkpoint_id, []) + self._staged
            self._staged = []

    def commit(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` is complete: what was sealed for it and before becomes visible,
        oldest first. Never waits: the room was waited for when the records were staged."""
        with self._cond:
            for sealed in sorted(c for c in self._sealed if c <= checkpoint_id):
                self._records.extend(self._sealed.pop(sealed))
            self._cond.notify_all()

    def discard_uncommitted(self) -> None:
        """A restart: what no complete checkpoint holds will be delivered again; drop it."""
        with self._cond:
            self._staged = []
            self._sealed.clear()

    def complete(self) -> None:
        """Every upstream instance has ended its stream: iteration ends after the last record."""
        with self._cond:
            self._complete = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The records will never be complete: iteration raises `error` once the buffer is empty."""
        with self._cond:
            if not self._complete and self._error is None:
                self._error = error
            self._cond.notify_all()

    # ------------------------------------------------------------------ the user's side
    def __iter__(self) -> Iterator[Any]:
        with self._cond:
            self._reading = True
            self._cond.notify_all()
        records = self._records
        while True:
            with self._cond:
                while not records and not self._complete and self._error is None:
                    self._cond.wait()
                if records:
                    # One at a time: a record leaves the buffer only when it is handed out, so an
                    # iterator dropped half-way (next(iter(results))) loses nothing.
                    record = records.popleft()
                    if len(records) < self.capacity:
                        self._cond.notify_all()  # room for the reader thread
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield record

    def done(self) -> bool:
        """True once no more records will arrive (complete, or failed)."""
        with self._cond:
            return self._complete or self._error is not None

    def __repr__(self) -> str:
        state = "complete" if self._complete else "failed" if self._error is not None else "receiving"
        return f"CollectedRecords({self.name!r}, {self.received} received, {state})"


class DriverReader:
    """Moves the records of one driver queue into a `CollectedRecords`, until end of stream.

    `expected` names the upstream instances; once each has sent its stop
    signal, the records are complete and `on_exit(name, "finished", None)` is
    called. A transport failure calls `on_exit(name, "failed", error)`;
    `cancel()` ends the thread within `READ_WAIT` seconds (`on_exit` with
    "cancelled"); the job then fails the records with its own error.

    With `checkpoints` (where its parts go), barriers are aligned across the
    channels, records are staged per checkpoint and made visible by
    `notify_checkpoint_complete`, and the reader ends only once the checkpoint
    holding its final part is complete.
    """

    def __init__(self, name: str, descriptor: BaseQueueDescriptor, expected: list[str], records: CollectedRecords,
                 on_exit: Callable[[str, str, BaseException | None], None],
                 checkpoints: ReaderCheckpoints | None = None, restored_checkpoint: int = 0) -> None:
        self.name = name
        self.descriptor = descriptor
        self.expected = set(expected)
        self.records = records
        self.status = "created"
        self._on_exit = on_exit
        self._checkpoints = checkpoints
        self._aligner = Aligner(restored_checkpoint)
        self._ended: set[str] = set()
        self._committed = threading.Event()
        self._final_checkpoint: int | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sage-collect-{name}", daemon=True)

    def start(self) -> None:
        self.status = "running"
        self._thread.start()

    def stop(self) -> None:
        """Nothing to stop: the reader ends with its upstream's streams."""

    def cancel(self) -> None:
        self._cancelled.set()

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        """Not a source: barriers reach it through its queue."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Make the records staged for `checkpoint_id` and before visible."""
        self.records.commit(checkpoint_id)
        final = self._final_checkpoint
        if final is not None and checkpoint_id >= final:
            self._committed.set()

    def _run(self) -> None:
        try:
            while self._ended != self.expected:
                if self._cancelled.is_set():  # the job ended: it tells the records why
                    self._exit("cancelled")
                    return
                try:
                    items = self.descriptor.get_many(READ_BATCH, READ_WAIT)
                except queue.Empty:
                    continue
                while items:
                    items = self._take(items)
            if self._checkpoints is not None and not self._wait_for_final_commit():
                self._exit("cancelled")
                return
        except Exception as exc:
            self._exit("failed", exc)
            return
        self.records.complete()
        self._exit("finished")

    def _exit(self, status: str, error: BaseException | None = None) -> None:
        self.status = status
        self._on_exit(self.name, status, error)

    def _take(self, items: list[Any]) -> list[Any]:
        """Handle items in order; returns what to handle next when an alignment completed on the way."""
        aligner = self._aligner
        records: list[Any] = []
        for position, item in enumerate(items):
            cls = item.__class__
            aligned = None
            if aligner.holds(getattr(item, "source", None)):
                aligner.hold(item)
            elif cls is Batch:
                records.extend(item.payloads)
            elif cls is CheckpointBarrier:
                aligned = aligner.barrier(item.checkpoint_id, item.source, self.expected - self._ended)
            elif cls is StopSignal:
                self._ended.add(str(item.source))
                aligned = aligner.check(self.expected - self._ended)
            elif isinstance(item, Packet):
                records.append(item.payload)
            else:
                logger.warning("%s ignored an unknown queue item %r", self.name, item)
            if aligned is not None:
                if not self._deliver(records):
                    return []  # cancelled: no part may claim records that were not kept
                self._snapshot(aligned)
                return aligned.held + items[position + 1:]
        self._deliver(records)
        return []

    def _deliver(self, records: list[Any]) -> bool:
        """Stage (with checkpoints) or add `records`; False when cancelled first (they are not kept: the
        loop then exits)."""
        if not records:
            return not self._cancelled.is_set()
        if self._checkpoints is not None:
            return self.records.stage(records, self._cancelled)
        return self.records.add(records, self._cancelled)

    def _snapshot(self, aligned: Aligned) -> None:
        if self._checkpoints is None:
            return
        self.records.seal(aligned.checkpoint_id)
        self._checkpoints.on_part(SnapshotPart(aligned.checkpoint_id, self.name, encode({}), aligned.seconds))

    def _wait_for_final_commit(self) -> bool:
        """All channels ended: seal the rest, send the final part, wait until a checkpoint holds it."""
        assert self._checkpoints is not None
        final = self._final_checkpoint = self._aligner.last_checkpoint + 1
        self.records.seal(final)
        self._checkpoints.on_final(FinalPart(self.name, encode({}), self._aligner.last_checkpoint))
        while not self._committed.wait(READ_WAIT):
            if self._cancelled.is_set():
                return False
        return True

    def metrics(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "collect", "status": self.status, "records_in": self.records.received}

    def routing_info(self) -> dict[str, Any]:
        return {"name": self.name, "input_queue_id": self.descriptor.queue_id, "groups": {}}


class ReaderCheckpoints(Protocol):
    """Where a driver reader's checkpoint parts go (the coordinator, for the current attempt)."""

    def on_part(self, part: SnapshotPart) -> None: ...

    def on_final(self, part: FinalPart) -> None: ...
