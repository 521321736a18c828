"""The checkpoint coordinator against a real SQLite store, and the control reader that feeds it."""

from __future__ import annotations

import pathlib
import sqlite3
import threading

import pytest

from sage.kernel.runtime.checkpoint import CheckpointCoordinator, CheckpointStore
from sage.kernel.runtime.checkpoint.control import ControlReader
from sage.kernel.runtime.checkpoint.messages import EndOfInput, FinalPart, SnapshotPart
from sage.kernel.runtime.communication.queue_descriptor.python_queue_descriptor import PythonQueueDescriptor

WAIT = 30.0


class Participant:
    """Records what the coordinator tells it."""

    def __init__(self) -> None:
        self.triggered: list[int] = []
        self.completed: list[int] = []

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        self.triggered.append(checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.completed.append(checkpoint_id)


def test_a_part_arriving_while_the_checkpoint_is_begun_completes_it_only_once_it_is_stored(
        tmp_path: pathlib.Path) -> None:
    racers: list[threading.Thread] = []

    class RacingStore(CheckpointStore):
        def begin(self, job: str, run: int, checkpoint_id: int, started: float) -> None:
            # The source's part for this checkpoint arrives (on the control thread) while it is being begun.
            part = SnapshotPart(checkpoint_id, "src_0", b"s", 0)
            racer = threading.Thread(target=coordinator.on_part, args=(0, part))
            racers.append(racer)
            racer.start()
            if not coordinator._lock.locked():  # the checkpoint is visible in flight already: let the part win
                racer.join(WAIT)
            super().begin(job, run, checkpoint_id, started)

    store = RacingStore(str(tmp_path))
    run = store.start_run("wc", "s")
    coordinator = CheckpointCoordinator(store, "wc", run, None, 1)
    source = Participant()
    coordinator.begin_attempt(0)
    coordinator.participants({"src_0": source}, ["src_0"])

    assert coordinator.trigger() == 1
    racers[0].join(WAIT)
    assert not racers[0].is_alive()
    assert [(i.checkpoint_id, i.status) for i in store.list()] == [(1, "complete")]  # never left "pending"
    assert store.load("wc", run, 1) == {"src_0": b"s"}
    assert source.triggered == [1] and source.completed == [1]
    assert coordinator.metrics()["in_flight"] is None and coordinator.metrics()["last_id"] == 1


def test_a_checkpoint_whose_begin_failed_is_not_in_flight(tmp_path: pathlib.Path) -> None:
    failures = [sqlite3.OperationalError("disk I/O error")]

    class FlakyStore(CheckpointStore):
        def begin(self, job: str, run: int, checkpoint_id: int, started: float) -> None:
            if failures:
                raise failures.pop()
            super().begin(job, run, checkpoint_id, started)

    store = FlakyStore(str(tmp_path))
    run = store.start_run("wc", "s")
    coordinator = CheckpointCoordinator(store, "wc", run, None, 1)
    source = Participant()
    coordinator.begin_attempt(0)
    coordinator.participants({"src_0": source}, ["src_0"])

    with pytest.raises(sqlite3.OperationalError):
        coordinator.trigger()
    assert coordinator.metrics()["in_flight"] is None and source.triggered == []
    checkpoint_id = coordinator.trigger()  # the next trigger is not blocked by the one that never began
    assert checkpoint_id is not None and source.triggered == [checkpoint_id]
    coordinator.on_part(0, SnapshotPart(checkpoint_id, "src_0", b"s", 0))
    assert [(i.checkpoint_id, i.status) for i in store.list()] == [(checkpoint_id, "complete")]
    assert source.completed == [checkpoint_id]


def test_a_failing_callback_ends_the_control_reader_through_on_error() -> None:
    control = PythonQueueDescriptor(maxsize=0)
    errors: list[BaseException] = []
    failed = threading.Event()
    seen: list[object] = []

    def on_final(part: FinalPart) -> None:
        raise sqlite3.OperationalError("database is locked")

    def on_error(error: BaseException) -> None:
        errors.append(error)
        failed.set()

    reader = ControlReader("t", control, seen.append, on_final, seen.append, on_error)
    reader.start()
    try:
        control.put(EndOfInput("src_0"))
        control.put(FinalPart("src_0", b"s", 0))
        assert failed.wait(WAIT), "the failure never reached on_error"
        reader._thread.join(WAIT)
        assert not reader._thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], sqlite3.OperationalError)
        assert [type(item) for item in seen] == [EndOfInput]
    finally:
        reader.stop()


def test_a_failing_control_queue_reaches_on_error() -> None:
    class BrokenQueue(PythonQueueDescriptor):
        def get_many(self, max_items: int, timeout: float | None = None) -> list[object]:
            raise ConnectionError("the queue is gone")

    errors: list[BaseException] = []
    failed = threading.Event()

    def on_error(error: BaseException) -> None:
        errors.append(error)
        failed.set()

    reader = ControlReader("t", BrokenQueue(maxsize=0), print, print, print, on_error)
    reader.start()
    try:
        assert failed.wait(WAIT), "the failure never reached on_error"
        assert len(errors) == 1 and isinstance(errors[0], ConnectionError)
    finally:
        reader.stop()
