"""What `stream.collect()` returns: the stream's records, read in the driver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runtime.collect import CollectedRecords
    from .job import Job


class Results:
    """The records of one `collect()` edge, delivered to the process that submits the job.

    Iterate it (once) to get every record: after `env.submit(autostop=True)`
    `list(results)` holds them all; while a job runs, iterating yields records
    as they arrive and ends at end of stream. Order is kept per channel (the
    records of one upstream instance arrive in the order it sent them).

    Iteration consumes: a record is handed out once, so iterate once (two
    iterators share the records). It raises `JobFailedError` when the job
    failed and `JobCancelledError` when it was cancelled before the records
    were complete. Iterating before the job was submitted raises
    `RuntimeError`.

    Memory: records wait in the driver until read. Before anyone iterates,
    every record is kept (so `submit(autostop=True)` can finish); once an
    iteration has started, at most `capacity` records wait and a slow reader
    slows the job down (backpressure).
    """

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self._job: Job | None = None

    def _bind(self, job: Job) -> None:
        self._job = job

    def _records(self) -> CollectedRecords:
        if self._job is None:
            raise RuntimeError(f"{self.name}: submit the environment first; the records come from its job")
        return self._job.run.results[self.name]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records())

    def done(self) -> bool:
        """True once no more records will arrive (all of them arrived, or the job failed)."""
        return self._job is not None and self._records().done()

    def __repr__(self) -> str:
        state = repr(self._records()) if self._job is not None else "not submitted"
        return f"Results({self.name!r}, {state})"
