"""The checkpoint coordinator: triggers checkpoints, collects every task's part, completes them.

One coordinator runs in the driver per job, across its restarts. Every
`interval` seconds, when no checkpoint is in flight, it triggers the next one:
it records it as pending in the store and asks every running source to inject
barrier n between two records. The barrier travels with the data; each task
takes its snapshot once the barrier arrived on all its open channels and sends
its part through the job's control queue. A task that ended its stream sent
its final part instead, which stands for it in every later checkpoint (it
will never see another barrier). When every participant's part is in, the
coordinator stores them all in one transaction (the checkpoint is complete)
and tells the participants (`notify_checkpoint_complete`), which is when a
transactional sink commits what it staged for that checkpoint.

When every participant has sent its final part, the coordinator stores a last
checkpoint, "finished" when the sources ran out, "stopped" after `job.stop()`
(a resumed job continues where the sources stopped).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .messages import EndOfInput, FinalPart, SnapshotPart
from .store import CheckpointStore

logger = logging.getLogger(__name__)


class Participant(Protocol):
    """A task or driver reader that takes part in checkpoints."""

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        """Inject barrier `checkpoint_id` (sources only; others ignore it). Returns at once."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` is complete. Returns at once."""


@dataclasses.dataclass
class _InFlight:
    checkpoint_id: int
    started: float
    waiting: set[str]
    parts: dict[str, bytes]


@dataclasses.dataclass(frozen=True)
class CompletedCheckpoint:
    """What `job.metrics()` reports of the last complete checkpoint."""

    checkpoint_id: int
    completed_at: float
    duration_seconds: float
    bytes: int
    status: str


class CheckpointCoordinator:
    """Checkpoints of one job (run `run` of `job` in `store`); see the module docs.

    Thread-safe. `begin_attempt()` hands it an attempt's participants;
    `on_part`/`on_final` take what the attempt's control queue delivers;
    `close()` ends the triggering. `interval` None: no periodic checkpoints
    (only the final one, e.g. for `job.stop()`).
    """

    def __init__(self, store: CheckpointStore, job: str, run: int, interval: float | None, first_id: int) -> None:
        self.store = store
        self.job = job
        self.run = run
        self.interval = interval
        self.last_completed: CompletedCheckpoint | None = None
        self.completed_count = 0
        self._next_id = first_id
        self._attempt = 0
        self._participants: dict[str, Participant] = {}
        self._sources: dict[str, Participant] = {}
        self._finals: dict[str, FinalPart] = {}
        self._in_flight: _InFlight | None = None
        self._final_status = "finished"
        self._final_done = False
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None
        self._after_final: list[Callable[[], None]] = []
        self._requested = False  # a source ended during a checkpoint in flight: trigger another after it

    # ------------------------------------------------------------------ attempts
    def begin_attempt(self, attempt: int) -> None:
        """A new attempt starts: parts of earlier attempts count no more.

        Call it before the attempt's instances start (their parts may arrive
        before `participants()` is called). Whatever an earlier attempt left
        in flight is abandoned: it stays pending in the store, never restored.
        """
        with self._lock:
            self._attempt = attempt
            self._participants = {}
            self._sources = {}
            self._finals = {}
            self._in_flight = None
            self._final_done = False
            self._after_final = []
            self._requested = False

    def after_final(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once the attempt's final checkpoint is stored (at once if it already is)."""
        with self._lock:
            if not self._final_done:
                self._after_final.append(callback)
                return
        callback()

    def participants(self, participants: dict[str, Participant], sources: list[str]) -> None:
        """Every instance of the attempt is started: checkpoints involve `participants` (by name), and
        `sources` name those asked to inject barriers (sources, and the entries of loops, which inject
        once their sources have ended). Starts the trigger timer once."""
        with self._lock:
            self._participants = dict(participants)
            self._sources = {name: participants[name] for name in sources}
        if self.interval is not None and self._timer is None:
            self._timer = threading.Thread(target=self._trigger_loop, name=f"sage-checkpoints-{self.job}",
                                           daemon=True)
            self._timer.start()
        self._complete_if_ready()  # instances that already ended sent their final parts
        self._trigger_requested()  # sources that already ran out of input

    def suspend(self) -> None:
        """An attempt failed: its parts complete nothing from now on (until the next `begin_attempt`)."""
        with self._lock:
            self._attempt = -1
            self._participants = {}
            self._sources = {}
            self._in_flight = None

    def stopping(self) -> None:
        """The job was asked to stop: its last checkpoint is "stopped" (resumable), not "finished"."""
        with self._lock:
            self._final_status = "stopped"

    def close(self) -> None:
        """Trigger no more checkpoints (the job has ended)."""
        self._closed.set()

    # ------------------------------------------------------------------ triggering
    def _trigger_loop(self) -> None:
        assert self.interval is not None
        while not self._closed.wait(self.interval):
            try:
                self.trigger()
            except Exception:  # the store failed: log it and try again at the next interval
                logger.exception("job %s: triggering a checkpoint failed", self.job)

    def trigger(self) -> int | None:
        """Start the next checkpoint unless one is in flight; return its id (None when none started)."""
        with self._lock:
            if self._in_flight is not None or self._final_done or not self._participants:
                return None
            checkpoint_id = self._next_id
            self._next_id += 1
            started = time.time()
            # Stored as pending before any part can complete it (and not in flight at all if this fails).
            self.store.begin(self.job, self.run, checkpoint_id, started)
            waiting = set(self._participants) - set(self._finals)
            self._in_flight = _InFlight(checkpoint_id, started, waiting,
                                        {name: f.state for name, f in self._finals.items()})
            sources = [handle for name, handle in self._sources.items() if name not in self._finals]
        for handle in sources:
            handle.trigger_checkpoint(checkpoint_id)
        self._complete_if_ready()
        return checkpoint_id

    def on_end_of_input(self, attempt: int, message: EndOfInput) -> None:
        """A source emitted its last record: checkpoint now (or right after the one in flight), so that a
        barrier follows that record and the source can end once it completes."""
        with self._lock:
            if attempt != self._attempt:
                return
            self._requested = True
        self._trigger_requested()

    def _trigger_requested(self) -> None:
        """Trigger the checkpoint a source asked for, once none is in flight and the participants are known."""
        with self._lock:
            if not self._requested or self._in_flight is not None or not self._participants:
                return
            self._requested = False
        self.trigger()

    # ------------------------------------------------------------------ parts
    def on_part(self, attempt: int, part: SnapshotPart) -> None:
        """A task's state for an in-flight checkpoint (parts of other attempts or checkpoints are ignored)."""
        with self._lock:
            in_flight = self._in_flight
            if attempt != self._attempt or in_flight is None or part.checkpoint_id != in_flight.checkpoint_id:
                return
            in_flight.parts[part.task] = part.state
            in_flight.waiting.discard(part.task)
        self._complete_if_ready()

    def on_final(self, attempt: int, part: FinalPart) -> None:
        """A task ended its stream with this state; it stands for the task from now on."""
        with self._lock:
            if attempt != self._attempt:
                return
            self._finals[part.task] = part
            in_flight = self._in_flight
            if in_flight is not None and part.task in in_flight.waiting:
                in_flight.parts[part.task] = part.state
                in_flight.waiting.discard(part.task)
        self._complete_if_ready()

    def _complete_if_ready(self) -> None:
        completed: list[tuple[int, str]] = []
        with self._lock:
            in_flight = self._in_flight
            if in_flight is not None and not in_flight.waiting:
                self._commit(in_flight.checkpoint_id, in_flight.started, in_flight.parts, "complete")
                completed.append((in_flight.checkpoint_id, "complete"))
                self._in_flight = None
            if (self._in_flight is None and not self._final_done and self._participants
                    and set(self._finals) >= set(self._participants)):
                checkpoint_id = self._next_id
                self._next_id += 1
                started = time.time()
                self.store.begin(self.job, self.run, checkpoint_id, started)
                parts = {name: f.state for name, f in self._finals.items()}
                self._commit(checkpoint_id, started, parts, self._final_status)
                self._final_done = True
                completed.append((checkpoint_id, self._final_status))
            participants = list(self._participants.values())
            after_final, self._after_final = (self._after_final, []) if self._final_done else ([], self._after_final)
        for checkpoint_id, _ in completed:
            for participant in participants:
                participant.notify_checkpoint_complete(checkpoint_id)
        for callback in after_final:
            callback()
        if completed:
            self._trigger_requested()

    def _commit(self, checkpoint_id: int, started: float, parts: dict[str, bytes], status: str) -> None:
        """Store a checkpoint whose parts are all in (lock held)."""
        size = self.store.commit(self.job, self.run, checkpoint_id, sorted(parts.items()), status)
        now = time.time()
        self.last_completed = CompletedCheckpoint(checkpoint_id, now, now - started, size, status)
        self.completed_count += 1

    # ------------------------------------------------------------------ insight
    def metrics(self) -> dict[str, Any]:
        """The checkpoint figures `job.metrics()` reports under "checkpoints"."""
        last = self.last_completed
        with self._lock:
            in_flight = self._in_flight.checkpoint_id if self._in_flight is not None else None
        return {
            "completed": self.completed_count,
            "in_flight": in_flight,
            "last_id": last.checkpoint_id if last else None,
            "last_completed_at": last.completed_at if last else None,
            "last_duration_seconds": last.duration_seconds if last else None,
            "last_bytes": last.bytes if last else None,
            "last_status": last.status if last else None,
        }
