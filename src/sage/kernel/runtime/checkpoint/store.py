"""Where checkpoints are kept: an SQLite file in the checkpoint directory, written only by the driver.

Layout: a job (by name) has runs; a run has numbered checkpoints; a
checkpoint has one part per task instance (its state, pickled). A checkpoint
is written in two steps: a "pending" row when it is triggered, then every
part and its final status in ONE transaction, so a process killed while
writing leaves the checkpoint pending (never restored) and the previous one
intact. Statuses:

- "pending": triggered, not complete (or torn by a crash): never restored;
- "complete": every task's part is stored;
- "stopped": the last checkpoint of a job that was stopped (`job.stop()`);
  resumable, its sources continue where they stopped;
- "finished": the last checkpoint of a job that ended by itself. Resuming it
  ends at once, after completing any commit a crash interrupted (a sink's
  last files); a new run of the job starts over with `resume=False`.

The interface (`CheckpointStore`) is small on purpose, so an object store can
stand in for SQLite later.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

STORE_FILE = "checkpoints.sqlite"
KEEP = 3
"""Complete checkpoints kept per run (older ones are deleted when a newer one completes)."""

RESUMABLE = ("complete", "stopped", "finished")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    job TEXT NOT NULL, run INTEGER NOT NULL, created REAL NOT NULL, shape TEXT NOT NULL,
    PRIMARY KEY (job, run));
CREATE TABLE IF NOT EXISTS checkpoints (
    job TEXT NOT NULL, run INTEGER NOT NULL, id INTEGER NOT NULL, started REAL NOT NULL,
    completed REAL, bytes INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
    PRIMARY KEY (job, run, id));
CREATE TABLE IF NOT EXISTS parts (
    job TEXT NOT NULL, run INTEGER NOT NULL, id INTEGER NOT NULL, task TEXT NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (job, run, id, task));
"""


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint as listed: who, which, when, how big, and whether it can be restored."""

    job: str
    run: int
    checkpoint_id: int
    started: float
    completed: float | None
    bytes: int
    status: str

    @property
    def duration(self) -> float | None:
        return None if self.completed is None else self.completed - self.started

    @property
    def restorable(self) -> bool:
        return self.status in RESUMABLE


@dataclasses.dataclass(frozen=True)
class RestoredCheckpoint:
    """A checkpoint a job attempt starts from: its id and every task's state, by task name."""

    checkpoint_id: int
    parts: dict[str, bytes]


class CheckpointStore:
    """The checkpoints of every job kept in `directory` (created if missing).

    Thread-safe: every call opens its own connection. Raises `sqlite3.Error`
    (an `OSError` for a directory it cannot create) when the store cannot be
    read or written.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, STORE_FILE)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ runs
    def latest_run(self, job: str) -> tuple[int, str] | None:
        """(run, shape) of the job's newest run, or None."""
        with self._connect() as db:
            row = db.execute("SELECT run, shape FROM runs WHERE job = ? ORDER BY run DESC LIMIT 1", (job,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def start_run(self, job: str, shape: str) -> int:
        """A new run of `job` for a pipeline of `shape`; returns its number."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT COALESCE(MAX(run), 0) FROM runs WHERE job = ?", (job,)).fetchone()
            run = int(row[0]) + 1
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (job, run, time.time(), shape))
            db.execute("COMMIT")
        return run

    # ------------------------------------------------------------------ checkpoints
    def last(self, job: str, run: int) -> CheckpointInfo | None:
        """The newest checkpoint of the run that is complete, stopped or finished; None if there is none."""
        with self._connect() as db:
            row = db.execute(
                "SELECT job, run, id, started, completed, bytes, status FROM checkpoints "
                "WHERE job = ? AND run = ? AND status != 'pending' ORDER BY id DESC LIMIT 1", (job, run)).fetchone()
        return None if row is None else CheckpointInfo(*row)

    def next_id(self, job: str, run: int) -> int:
        """One more than the run's highest checkpoint id (pending ones included)."""
        with self._connect() as db:
            row = db.execute("SELECT COALESCE(MAX(id), 0) FROM checkpoints WHERE job = ? AND run = ?",
                             (job, run)).fetchone()
        return int(row[0]) + 1

    def begin(self, job: str, run: int, checkpoint_id: int, started: float) -> None:
        """Record that checkpoint `checkpoint_id` was triggered (status "pending")."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints (job, run, id, started, status) VALUES (?, ?, ?, ?, ?)",
                       (job, run, checkpoint_id, started, "pending"))

    def commit(self, job: str, run: int, checkpoint_id: int, parts: Iterable[tuple[str, bytes]],
               status: str = "complete") -> int:
        """Store every task's part and mark the checkpoint `status`, all in one transaction.

        Returns the bytes stored. A process that dies before the transaction
        commits leaves nothing of it: the checkpoint stays pending. Older
        complete checkpoints beyond `KEEP` are deleted in the same transaction.
        Raises `LookupError` (storing nothing) for a checkpoint `begin` never recorded.
        """
        if status not in RESUMABLE:
            raise ValueError(f"a checkpoint is committed complete, stopped or finished, not {status!r}")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                size = 0
                for task, state in parts:
                    db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?)",
                               (job, run, checkpoint_id, task, state))
                    size += len(state)
                updated = db.execute("UPDATE checkpoints SET completed = ?, bytes = ?, status = ? "
                                     "WHERE job = ? AND run = ? AND id = ?",
                                     (time.time(), size, status, job, run, checkpoint_id)).rowcount
                if updated != 1:
                    raise LookupError(f"checkpoint {checkpoint_id} of job {job!r} run {run} was never begun "
                                      f"(or was pruned): it cannot be committed")
                self._prune(db, job, run)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return size

    def _prune(self, db: sqlite3.Connection, job: str, run: int) -> None:
        old = [row[0] for row in db.execute(
            "SELECT id FROM checkpoints WHERE job = ? AND run = ? AND status != 'pending' ORDER BY id DESC "
            "LIMIT -1 OFFSET ?", (job, run, KEEP))]
        old += [row[0] for row in db.execute(
            "SELECT id FROM checkpoints WHERE job = ? AND run = ? AND status = 'pending' AND id < "
            "(SELECT COALESCE(MAX(id), 0) FROM checkpoints WHERE job = ? AND run = ? AND status != 'pending')",
            (job, run, job, run))]
        for checkpoint_id in old:
            db.execute("DELETE FROM parts WHERE job = ? AND run = ? AND id = ?", (job, run, checkpoint_id))
            db.execute("DELETE FROM checkpoints WHERE job = ? AND run = ? AND id = ?", (job, run, checkpoint_id))

    def load(self, job: str, run: int, checkpoint_id: int) -> dict[str, bytes]:
        """Every task's part of a checkpoint, by task name."""
        with self._connect() as db:
            rows = db.execute("SELECT task, state FROM parts WHERE job = ? AND run = ? AND id = ?",
                              (job, run, checkpoint_id)).fetchall()
        return {str(task): bytes(state) for task, state in rows}

    def list(self) -> list[CheckpointInfo]:
        """Every checkpoint of every job, by job, run and id."""
        with self._connect() as db:
            rows = db.execute("SELECT job, run, id, started, completed, bytes, status FROM checkpoints "
                              "ORDER BY job, run, id").fetchall()
        return [CheckpointInfo(*row) for row in rows]
