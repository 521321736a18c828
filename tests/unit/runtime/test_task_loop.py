"""The task loop: end of stream per upstream instance, close before the stop signal, metrics.

One map task runs on a thread of the test; the test plays its upstream
instances by putting packets and stop signals on the task's real input
queue, and reads what the task sends from its downstream queue.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from sage.kernel import LocalEnvironment, StopSignal
from sage.kernel.api.function import MapFunction
from sage.kernel.runtime.backend.local_backend import LocalBackend
from sage.kernel.runtime.communication.router import Batch, Packet
from sage.kernel.runtime.compile import compile_graph
from sage.kernel.runtime.dispatcher import Dispatcher
from sage.kernel.runtime.job import JobRun
from sage.kernel.runtime.task import Task, TaskFailure

TIMEOUT = 10.0


class Plus(MapFunction):
    """Adds `n`; on close, notes whether anything was still to be sent (it must not be yet)."""

    def __init__(self, n: int, closed: list[str]) -> None:
        self.n, self.closed = n, closed

    def execute(self, data: int) -> int:
        if data < 0:
            raise ValueError(f"negative {data}")
        return data + self.n

    def close(self) -> None:
        self.closed.append(self.name)


class TaskUnderTest:
    """The map task `Plus_0` of `from_batch x2 -> Plus -> sink`, run alone on a thread."""

    def __init__(self, on_error: str = "fail", keyed: bool = False) -> None:
        self.closed: list[str] = []
        env = LocalEnvironment("task-loop")
        stream = env.from_batch([0], parallelism=2)
        if keyed:
            stream = stream.keyby(lambda x: x)
        stream.map(Plus, 10, self.closed, on_error=on_error).sink(print)
        backend = LocalBackend()
        self.graph = compile_graph(env.job_spec(), f"task-loop-{id(self)}", backend)
        dispatcher = Dispatcher(JobRun(self.graph.job_id, env.name), self.graph, backend, env.config,
                                on_end=lambda *_: None)
        node = self.graph.nodes["Plus_0"]
        self.task = Task(dispatcher.task_context("Plus_0"), node.spec)
        self.input = node.input_qd
        self.upstream = node.upstream_names
        self.output = self.graph.nodes["print_0"].input_qd
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result.append(self.task.run())
        except TaskFailure as failure:
            self.result.append(failure)

    def put(self, *items: Any) -> None:
        self.input.put_many(list(items))

    def finish(self) -> Any:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the task did not end"
        return self.result[0]

    def receive(self, n: int) -> list[Any]:
        """The first `n` records or signals the task sends (batches expanded), blocking until they are there."""
        items: list[Any] = []
        while len(items) < n:
            items.extend(records(self.output.get_many(1, timeout=TIMEOUT)))
        return items

    def sent(self) -> list[Any]:
        """Every record or signal the task has sent so far (batches expanded; not blocking)."""
        items: list[Any] = []
        while not self.output.empty():
            items.extend(records(self.output.get_many(1024, timeout=0)))
        return items

    def close(self) -> None:
        self.task.cancel()
        self.thread.join(TIMEOUT)
        for node in self.graph.nodes.values():
            if node.input_qd is not None:
                node.input_qd.close()


@pytest.fixture
def make_task():
    made: list[TaskUnderTest] = []

    def make(**kwargs: Any) -> TaskUnderTest:
        made.append(TaskUnderTest(**kwargs))
        return made[-1]

    yield make
    for t in made:
        t.close()


def records(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(item.packets() if isinstance(item, Batch) else [item])
    return out


def test_finishes_only_after_a_stop_signal_from_every_upstream_instance(make_task, caplog) -> None:
    t = make_task()
    with caplog.at_level(logging.WARNING):
        t.put(Batch([1], source="from_batch_0"), StopSignal(source="from_batch_0"), Packet(2))
        # A duplicate from the same instance and a signal from a stranger do not count.
        t.put(StopSignal(source="from_batch_0"), StopSignal(source="someone_else"), Packet(3))
        # The task flushes what it sent when it runs out of input: once 13 is out, it has seen all of the above.
        sent = t.receive(3)
        assert t.thread.is_alive(), "the task ended before its second upstream instance stopped"
        t.put(StopSignal(source="from_batch_1"))
        assert t.finish() == "finished"
    assert "ignored a stop signal from unknown source 'someone_else'" in caplog.text

    sent += t.sent()
    assert [p.payload for p in sent[:-1]] == [11, 12, 13]
    assert isinstance(sent[-1], StopSignal) and sent[-1].source == "Plus_0"
    assert t.closed == ["Plus_0"]
    metrics = t.task.metrics()
    assert (metrics["status"], metrics["records_in"], metrics["records_out"]) == ("finished", 3, 3)


def test_a_failure_names_the_task_and_keeps_the_cause(make_task) -> None:
    t = make_task()
    t.put(Packet(1), Packet(-1), Packet(2))
    failure = t.finish()
    assert isinstance(failure, TaskFailure)
    assert failure.task_name == "Plus_0" and "Plus_0" in str(failure)
    assert isinstance(failure.__cause__, ValueError) and str(failure.__cause__) == "negative -1"
    assert t.task.status == "failed" and t.closed == []


def test_skip_goes_on_with_the_rest_of_the_batch(make_task) -> None:
    t = make_task(on_error="skip")
    t.put(Batch([1, -1, 2], source="from_batch_0"), StopSignal(source="from_batch_0"),
          StopSignal(source="from_batch_1"))
    assert t.finish() == "finished"
    assert [p.payload for p in t.sent()[:-1]] == [11, 12]
    metrics = t.task.metrics()
    assert (metrics["records_in"], metrics["records_out"], metrics["errors"]) == (3, 2, 1)


def test_a_failed_task_counts_what_it_really_emitted(make_task) -> None:
    t = make_task()
    t.put(Batch([1, 2], source="from_batch_0"))
    assert [p.payload for p in t.receive(2)] == [11, 12]
    t.put(Batch([3, 4, 5, 6, 7, -1, 8, 9, 10, 11], source="from_batch_1"))  # fails on its 6th record
    assert isinstance(t.finish(), TaskFailure)
    metrics = t.task.metrics()
    assert (metrics["records_in"], metrics["records_out"], metrics["errors"]) == (12, 2, 1)
    assert [p.payload for p in t.sent()] == []  # the failing batch's first five never went out


def test_keyed_records_stay_keyed_with_their_own_keys(make_task) -> None:
    t = make_task(keyed=True)
    first, second = t.upstream
    t.put(Batch([1, 2, 3], ["k", "b", 0], source=first), Packet(4, 0, ("t", 1), "hash"),
          StopSignal(source=first), StopSignal(source=second))
    assert t.finish() == "finished"
    sent = t.sent()[:-1]
    assert [(p.payload, p.partition_key, p.partition_strategy) for p in sent] == [
        (11, "k", "hash"), (12, "b", "hash"), (13, 0, "hash"), (14, ("t", 1), "hash"),
    ]


def test_cancel_ends_an_idle_task(make_task) -> None:
    t = make_task()
    t.put(Packet(1))
    t.task.cancel()
    assert t.finish() == "cancelled"
    assert t.closed == []
