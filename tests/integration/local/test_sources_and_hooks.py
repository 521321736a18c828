"""Every kind of source, falsy records, and the open()/close() hooks of function instances."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sage.kernel import LocalEnvironment, StopSignal
from sage.kernel.api.function import BatchFunction, FilterFunction, FlatMapFunction, MapFunction, SourceFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT


class Countdown(BatchFunction):
    """Returns n-1, ..., 1, 0, then None (the end); the 0 is a record, not the end."""

    def __init__(self, n: int) -> None:
        self.n = n

    def execute(self) -> int | None:
        if self.n == 0:
            return None
        self.n -= 1
        return self.n


def test_from_batch_with_a_batch_function_class_per_instance() -> None:
    out: list[int] = []
    env = LocalEnvironment("batch-class")
    env.from_batch(Countdown, 5, parallelism=2).sink(TestingSink, out)
    env.submit(autostop=True)
    assert sorted(out) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # one Countdown(5) per instance


def test_from_batch_with_a_generator() -> None:
    out: list[int] = []
    env = LocalEnvironment("generator")
    env.from_batch(x * x for x in range(1000)).sink(TestingSink, out)
    env.submit(autostop=True)
    assert out == [x * x for x in range(1000)]


def test_from_batch_splits_a_sequence_across_parallel_instances() -> None:
    out: list[int] = []
    env = LocalEnvironment("split")
    env.from_batch(range(1001), parallelism=3).sink(TestingSink, out)
    env.submit(autostop=True)
    assert sorted(out) == list(range(1001))


def test_from_source_callable_ends_with_a_stop_signal() -> None:
    state = {"n": 0}

    def ticks() -> int | StopSignal:
        state["n"] += 1
        return StopSignal("done") if state["n"] > 100 else state["n"]

    out: list[int] = []
    env = LocalEnvironment("ticks")
    env.from_source(ticks).sink(TestingSink, out)
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert out == list(range(1, 101))


def test_from_source_class_with_constructor_arguments() -> None:
    class Letters(SourceFunction):
        def __init__(self, text: str, *, repeat: int = 1) -> None:
            self.letters = list(text * repeat)

        def execute(self) -> Any:
            return self.letters.pop(0) if self.letters else StopSignal()

    out: list[str] = []
    env = LocalEnvironment("letters")
    env.from_source(Letters, "ab", repeat=3).sink(TestingSink, out)
    env.submit(autostop=True)
    assert "".join(out) == "ababab"


FALSY = [0, "", None, False, 0.0, [], {}, (), b""]


def test_falsy_records_are_not_lost() -> None:
    out: list[Any] = []
    mapped: list[Any] = []
    env = LocalEnvironment("falsy")
    stream = env.from_batch(FALSY)
    stream.sink(TestingSink, out)
    stream.map(lambda x: x).keyby(lambda x: 0).filter(lambda x: True).flatmap(lambda x: [x]).sink(TestingSink, mapped)
    env.submit(autostop=True)
    assert out == FALSY
    assert mapped == FALSY


def test_filter_and_flatmap() -> None:
    class Even(FilterFunction):
        def execute(self, data: int) -> bool:
            return data % 2 == 0

    class Repeat(FlatMapFunction):
        """Returns `data` copies via the result and one more via collect()."""

        def execute(self, data: int) -> list[int]:
            self.collect(-data)
            return [data] * data

    out: list[int] = []
    env = LocalEnvironment("filter-flatmap")
    env.from_batch(range(7)).filter(Even).flatmap(Repeat).sink(TestingSink, out)
    env.submit(autostop=True)
    assert out == [0, -2, 2, 2, -4, 4, 4, 4, 4, -6, 6, 6, 6, 6, 6, 6]


class Hooks(FlatMapFunction):
    """Logs its hooks; emits its record count with collect() from close()."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log = log
        self.count = 0

    def open(self) -> None:
        self.log.append(("open", self.name))

    def execute(self, data: int) -> None:
        self.count += 1

    def close(self) -> None:
        self.log.append(("close", self.name))
        self.collect(("count", self.name, self.count))


class SinkHooks(TestingSink):
    def __init__(self, out: list[Any], log: list[tuple[str, str]]) -> None:
        super().__init__(out)
        self.log = log

    def open(self) -> None:
        self.log.append(("open", self.name))

    def close(self) -> None:
        self.log.append(("close", self.name))


def test_open_and_close_run_once_per_instance_and_close_emits_before_the_stop_signal() -> None:
    log: list[tuple[str, str]] = []
    out: list[Any] = []
    env = LocalEnvironment("hooks")
    env.from_batch(range(100), parallelism=2).flatmap(Hooks, log, parallelism=3).sink(SinkHooks, out, log)
    env.submit(autostop=True)

    instances = ["Hooks_0", "Hooks_1", "Hooks_2"]
    assert sorted(log) == sorted([(hook, name) for name in [*instances, "SinkHooks_0"] for hook in ("open", "close")])
    # What close() collected reached the sink: the sink closed after every flatmap instance had closed.
    counts = {name: count for _, name, count in out}
    assert set(counts) == set(instances) and sum(counts.values()) == 100
    assert log.index(("close", "SinkHooks_0")) > max(log.index(("close", name)) for name in instances)


def test_functions_see_their_context() -> None:
    seen: list[tuple[str, int, int, str]] = []

    class Where(MapFunction):
        def execute(self, data: int) -> int:
            seen.append((self.name, self.ctx.parallel_index, self.ctx.parallelism, self.logger.name))
            return data

    env = LocalEnvironment("context")
    env.from_batch(range(20)).map(Where, parallelism=2).sink(TestingSink, [])
    env.submit(autostop=True)
    assert set(seen) == {(f"Where_{i}", i, 2, f"sage.kernel.user.Where_{i}") for i in range(2)}


def test_print_sink(capsys: pytest.CaptureFixture[str]) -> None:
    env = LocalEnvironment("print")
    env.from_batch(["a", "b"]).print(prefix="> ")
    env.submit(autostop=True)
    assert capsys.readouterr().out.splitlines() == ["> a", "> b"]


def test_an_idle_job_wakes_for_a_late_record() -> None:
    """A record emitted after the source has gone idle (returned None) is delivered at once."""
    idled = threading.Event()
    gate = threading.Event()
    delivered = threading.Event()
    state = {"empty_polls": 0, "sent": False}

    def late() -> Any:
        if gate.is_set() and not state["sent"]:
            state["sent"] = True
            return "late"
        state["empty_polls"] += 1
        if state["empty_polls"] >= 3:
            idled.set()
        return None

    out: list[str] = []

    def sink(x: str) -> None:
        out.append(x)
        delivered.set()

    env = LocalEnvironment("late")
    env.from_source(late).map(str.upper).sink(sink)
    job = env.submit()
    assert idled.wait(JOB_TIMEOUT)
    gate.set()
    assert delivered.wait(JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert out == ["LATE"]


def test_builtin_types_work_as_plain_callables() -> None:
    out: list[str] = []
    env = LocalEnvironment("builtins")
    env.from_batch(["1", "0", "2", "30"]).map(int).filter(bool).map(str).sink(TestingSink, out)
    job = env.submit(autostop=True)
    assert out == ["1", "2", "30"]
    assert {"int_0", "bool_0", "str_0"} <= set(job.metrics())
