"""Helpers for pipelines on the embedded local backend (threads in this process).

The local backend runs every task on a thread of the test process, so
function classes can share plain Python objects with the test (a list to
collect into, an Event to wait on) through their constructor arguments.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sage.kernel.api.function import SinkFunction
from sage.kernel.api.job import Job

JOB_TIMEOUT = 20.0
"""Seconds any test waits for a job; far above what a passing test needs."""


class CountTo(SinkFunction):
    """Appends every record to `out` and sets `reached` once `out` holds `n` records."""

    def __init__(self, out: list[Any], n: int, reached: threading.Event) -> None:
        self.out, self.n, self.reached = out, n, reached

    def execute(self, data: Any) -> None:
        self.out.append(data)
        if len(self.out) >= self.n:
            self.reached.set()


def join_task_threads(job: Job, timeout: float = 5.0) -> dict[str, str]:
    """Wait until every task thread of a local job has exited; return each task's final status.

    `wait()` returns as soon as the job's status is final; after a failure or
    a cancel the other tasks are told to stop and exit within their idle
    wait. This joins their threads so a test can look at where they ended.
    """
    handles = job.run._control.dispatcher.tasks
    for handle in handles.values():
        handle.thread.join(timeout)
        assert not handle.thread.is_alive(), f"task {handle.name} still running {timeout} s after the job ended"
    return {name: handle.task.status for name, handle in handles.items()}


def input_queue(job: Job, task_name: str) -> Any:
    """The live input queue (a `BatchQueue`) of one task of a local job."""
    return job.run._control.dispatcher.graph.nodes[task_name].input_qd.queue_instance


def wait_until_producer_blocked(q: Any, timeout: float = JOB_TIMEOUT) -> None:
    """Return once `q` is full and a producer is parked waiting for room; AssertionError after `timeout`.

    A thread parked in `Condition.wait()` is in the condition's waiter list
    (`_waiters`, CPython's threading.Condition): reading it under the lock
    tells that a producer is blocked without sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        with q.not_full:
            if len(q.queue) >= q.maxsize and q.not_full._waiters:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"no producer blocked on the full queue {q!r} within {timeout} s")
        time.sleep(0.001)
