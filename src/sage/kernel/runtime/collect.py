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
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .communication.queue_descriptor import BaseQueueDescriptor
from .communication.router import Batch, Packet, StopSignal

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
        self._complete = False
        self._error: BaseException | None = None
        self._reading = False
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ the reader thread's side
    def add(self, records: list[Any], cancelled: threading.Event) -> bool:
        """Append `records`; while a reader iterates and `capacity` records wait, block first.

        Returns False (adding nothing) once `cancelled` is set or the buffer was closed.
        """
        with self._cond:
            while self._reading and len(self._records) >= self.capacity and self._error is None:
                if cancelled.is_set():
                    return False
                self._cond.wait(READ_WAIT)
            if self._error is not None or cancelled.is_set():
                return False
            self._records.extend(records)
            self.received += len(records)
            self._cond.notify_all()
            return True

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
        while True:
            with self._cond:
                while not self._records and not self._complete and self._error is None:
                    self._cond.wait()
                if self._records:
                    batch = list(self._records)
                    self._records.clear()
                    self._cond.notify_all()  # room for the reader thread
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield from batch

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
    """

    def __init__(self, name: str, descriptor: BaseQueueDescriptor, expected: list[str], records: CollectedRecords,
                 on_exit: Callable[[str, str, BaseException | None], None]) -> None:
        self.name = name
        self.descriptor = descriptor
        self.expected = set(expected)
        self.records = records
        self.status = "created"
        self._on_exit = on_exit
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sage-collect-{name}", daemon=True)

    def start(self) -> None:
        self.status = "running"
        self._thread.start()

    def stop(self) -> None:
        """Nothing to stop: the reader ends with its upstream's streams."""

    def cancel(self) -> None:
        self._cancelled.set()

    def _run(self) -> None:
        ended: set[str] = set()
        try:
            while ended != self.expected:
                if self._cancelled.is_set():  # the job ended: it tells the records why
                    self.status = "cancelled"
                    self._on_exit(self.name, "cancelled", None)
                    return
                try:
                    items = self.descriptor.get_many(READ_BATCH, READ_WAIT)
                except queue.Empty:
                    continue
                records: list[Any] = []
                for item in items:
                    if item.__class__ is Batch:
                        records.extend(item.payloads)
                    elif item.__class__ is StopSignal:
                        ended.add(str(item.source))
                    elif isinstance(item, Packet):
                        records.append(item.payload)
                    else:
                        logger.warning("%s ignored an unknown queue item %r", self.name, item)
                if records and not self.records.add(records, self._cancelled):
                    continue  # cancelled while waiting for the user to read: the next turn says so
        except Exception as exc:
            self.status = "failed"
            self._on_exit(self.name, "failed", exc)
            return
        self.records.complete()
        self.status = "finished"
        self._on_exit(self.name, "finished", None)

    def metrics(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "collect", "status": self.status, "records_in": self.records.received}

    def routing_info(self) -> dict[str, Any]:
        return {"name": self.name, "input_queue_id": self.descriptor.queue_id, "groups": {}}
