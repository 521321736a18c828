"""Automatic restarts from the last complete checkpoint: exact state, exactly-once file output and results."""

from __future__ import annotations

import os
import pathlib
import random
import threading
from collections import Counter
from typing import Any

import pytest

from sage.kernel import JobFailedError, LocalEnvironment, PipelineError
from sage.kernel.api.function import CoMapFunction, JoinFunction, MapFunction
from sage.kernel.testing import wait_until

from .wordcount_job import build, committed_output, expected_output, final_counts, write_input

JOB_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Counter[str]]:
    directory = tmp_path_factory.mktemp("words")
    return str(directory), write_input(str(directory), files=4, lines=3000)


def run_wordcount(tmp_path: pathlib.Path, words: tuple[str, Counter[str]], transport: str, fail_at: int) -> Any:
    input_dir, _ = words
    env = build(input_dir, str(tmp_path / "out"), str(tmp_path / "ck"), transport, fail_at, str(tmp_path / "failed"))
    return env.submit(autostop=True)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_a_failure_restarts_from_the_last_checkpoint_and_equals_a_failure_free_run(
        tmp_path: pathlib.Path, words: tuple[str, Counter[str]], transport: str) -> None:
    _, totals = words
    clean = run_wordcount(tmp_path / "clean", words, transport, fail_at=0)
    fail_at = random.Random(os.getpid()).randrange(1000, 20_000)  # per Count instance; ~30k records each
    broken = run_wordcount(tmp_path / "broken", words, transport, fail_at=fail_at)

    assert (tmp_path / "broken" / "failed").exists(), "the failure was never injected"
    assert broken.metrics()["job"]["restarts"] == 1 and clean.metrics()["job"]["restarts"] == 0
    clean_out = Counter(committed_output(str(tmp_path / "clean" / "out")))
    broken_out = Counter(committed_output(str(tmp_path / "broken" / "out")))
    assert clean_out == broken_out == expected_output(totals)  # every record once: no loss, no repeat
    assert final_counts(str(tmp_path / "broken" / "ck")) == final_counts(str(tmp_path / "clean" / "ck")) == totals
    assert os.listdir(tmp_path / "broken" / "out" / ".staging") == []


class FailOnce(MapFunction):
    """Passes records on; raises at record `at` the first time (a flag shared by the test's attempts)."""

    def __init__(self, at: int, failed: threading.Event) -> None:
        self.at, self.failed, self.seen = at, failed, 0

    def execute(self, record: Any) -> Any:
        self.seen += 1
        if self.seen == self.at and not self.failed.is_set():
            self.failed.set()
            raise RuntimeError("injected once")
        return record

    def get_state(self) -> int:
        return self.seen

    def restore_state(self, state: int) -> None:
        self.seen = state


def test_collected_results_are_exactly_once_across_a_restart(tmp_path: pathlib.Path) -> None:
    failed = threading.Event()
    env = LocalEnvironment("collect-restart", config={
        "checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path), "restart_attempts": 1, "restart_delay": 0.01,
        "batch_size": 32, "queue_maxsize": 128})
    results = env.from_batch(range(60_000), parallelism=2).map(FailOnce, 20_000, failed, parallelism=2).collect()
    job = env.submit(autostop=True)
    assert failed.is_set() and job.metrics()["job"]["restarts"] == 1
    assert sorted(results) == list(range(60_000))


class Pair(CoMapFunction):
    """Tags records with their input; counts per input (state that must survive the restart)."""

    def __init__(self) -> None:
        self.seen = [0, 0]

    def map0(self, x: int) -> tuple[str, str, int, int]:
        self.seen[0] += 1
        return self.name, "left", x, self.seen[0]

    def map1(self, x: int) -> tuple[str, str, int, int]:
        self.seen[1] += 1
        return self.name, "right", x, self.seen[1]

    def get_state(self) -> list[int]:
        return list(self.seen)

    def restore_state(self, state: list[int]) -> None:
        self.seen = list(state)


class Matches(JoinFunction):
    """Keyed join: pairs a left and a right record of the same key (state: the unmatched ones)."""

    def __init__(self) -> None:
        self.waiting: dict[Any, list[tuple[int, int]]] = {}

    def execute(self, payload: int, key: int, tag: int) -> list[tuple[int, int, int]]:
        other = self.waiting.get(key, [])
        if other and other[0][0] != tag:
            _, partner = other.pop(0)
            return [(key, *(sorted((payload, partner))))]
        self.waiting.setdefault(key, []).append((tag, payload))
        return []

    def get_state(self) -> dict[Any, list[tuple[int, int]]]:
        return self.waiting

    def restore_state(self, state: dict[Any, list[tuple[int, int]]]) -> None:
        self.waiting = state


def test_two_inputs_align_their_barriers_through_a_failure(tmp_path: pathlib.Path) -> None:
    failed = threading.Event()
    env = LocalEnvironment("two-inputs", config={
        "checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path), "restart_attempts": 2, "restart_delay": 0.01,
        "batch_size": 16, "queue_maxsize": 64})
    left = env.from_batch(range(0, 40_000, 2), parallelism=2)
    right = env.from_batch(range(1, 40_000, 2), parallelism=3)
    tagged = left.connect(right).comap(Pair, parallelism=2).map(FailOnce, 9_000, failed, parallelism=2).collect()
    keyed_left = env.from_batch(range(20_000)).keyby(lambda x: x % 500)
    keyed_right = env.from_batch(range(20_000, 40_000)).keyby(lambda x: (x - 20_000) % 500)
    joined = keyed_left.connect(keyed_right).join(Matches, parallelism=3).map(FailOnce, 3_000, threading.Event(),
                                                                               parallelism=2).collect()
    job = env.submit(autostop=True)
    assert failed.is_set() and job.metrics()["job"]["restarts"] >= 1
    out = list(tagged)
    assert sorted(x for _, _, x, _ in out) == list(range(40_000))
    # Each comap instance counted each of its inputs 1, 2, 3, ... once: its state came back, nothing was redone.
    counters: dict[tuple[str, str], list[int]] = {}
    for instance, side, _, n in out:
        counters.setdefault((instance, side), []).append(n)
    assert all(sorted(ns) == list(range(1, len(ns) + 1)) for ns in counters.values()), counters.keys()
    assert sum(len(ns) for (_, side), ns in counters.items() if side == "left") == 20_000
    pairs = list(joined)
    assert len(pairs) == 20_000
    assert sorted(a for _, a, _ in pairs) == list(range(20_000))
    assert sorted(b for _, _, b in pairs) == list(range(20_000, 40_000))
    assert all(a % 500 == key == (b - 20_000) % 500 for key, a, b in pairs)


def test_status_shows_restarting_and_metrics_report_checkpoints(tmp_path: pathlib.Path) -> None:
    failed = threading.Event()
    env = LocalEnvironment("restarting", config={
        "checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path), "restart_attempts": 1, "restart_delay": 0.5})
    results = env.from_batch(range(20_000)).map(FailOnce, 5_000, failed).collect()
    job = env.submit()
    wait_until(lambda: job.status == "restarting", JOB_TIMEOUT, "the job never showed 'restarting'")
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert sorted(results) == list(range(20_000))
    metrics = job.metrics()
    own = metrics["job"]
    assert (own["restarts"], own["attempt"]) == (1, 1)
    checkpoints = own["checkpoints"]
    assert checkpoints["completed"] >= 1 and checkpoints["last_status"] == "finished"
    assert checkpoints["last_bytes"] > 0 and checkpoints["last_duration_seconds"] >= 0
    assert all("alignment_seconds" in m for name, m in metrics.items() if name.startswith("FailOnce"))
    text = job.metrics(format="prometheus")
    assert "sage_job_restarts_total" in text and "sage_job_last_checkpoint_bytes" in text


class AlwaysFails(MapFunction):
    def execute(self, record: int) -> int:
        raise ValueError(f"record {record} is bad")


def test_after_the_last_restart_the_job_fails_with_the_last_error(tmp_path: pathlib.Path) -> None:
    env = LocalEnvironment("hopeless", config={"restart_attempts": 2, "restart_delay": 0.01})
    env.from_batch(range(10)).map(AlwaysFails).collect()
    job = env.submit()
    with pytest.raises(JobFailedError, match="record 0 is bad") as info:
        job.wait(JOB_TIMEOUT)
    assert isinstance(info.value.__cause__, ValueError) and info.value.task_name == "AlwaysFails_0"
    assert job.metrics()["job"]["restarts"] == 2


def test_cancel_during_a_restart_ends_the_job_cancelled(tmp_path: pathlib.Path) -> None:
    env = LocalEnvironment("cancel-restart", config={"restart_attempts": 5, "restart_delay": 30.0})
    env.from_batch(range(10)).map(AlwaysFails).collect()
    job = env.submit()
    wait_until(lambda: job.status == "restarting", JOB_TIMEOUT)
    job.cancel()
    assert job.wait(JOB_TIMEOUT) == "cancelled"


def generator_source():
    yield from range(10)


class NoPosition(MapFunction):
    pass


def test_sources_that_cannot_resume_are_refused_when_checkpointing(tmp_path: pathlib.Path) -> None:
    from sage.kernel.api.function import SourceFunction

    class Forgetful(SourceFunction):
        def execute(self) -> int:
            return 1

    config = {"checkpoint_interval": 1.0, "checkpoint_dir": str(tmp_path)}
    env = LocalEnvironment("generator", config=config)
    env.from_batch(generator_source()).collect()
    with pytest.raises(PipelineError, match=r"'from_batch'.*generator cannot be replayed.*list, tuple or range"):
        env.submit()
    env = LocalEnvironment("forgetful", config=config)
    env.from_source(Forgetful).collect()
    with pytest.raises(PipelineError, match="source Forgetful has no get_state"):
        env.submit()
    with pytest.raises(PipelineError, match="checkpoint_interval needs a checkpoint_dir"):
        LocalEnvironment("no-dir", config={"checkpoint_interval": 1.0})
    with pytest.raises(PipelineError, match="checkpoint_dir without a checkpoint_interval takes no checkpoints"):
        LocalEnvironment("no-interval", config={"checkpoint_dir": "checkpoints"})


def test_the_last_checkpoint_is_stored_before_the_job_ends(tmp_path: pathlib.Path) -> None:
    """Even when no function waits for commits, the job ends only once its final checkpoint is stored."""
    from sage.kernel.runtime.checkpoint import CheckpointStore

    env = LocalEnvironment("final-stored", config={"checkpoint_interval": 10.0, "checkpoint_dir": str(tmp_path)})
    env.from_batch(range(1000)).map(FailOnce, 0, threading.Event()).sink(lambda x: None)
    job = env.submit(autostop=True)
    assert job.metrics()["job"]["checkpoints"]["last_status"] == "finished"
    stored = [i for i in CheckpointStore(str(tmp_path)).list() if i.status != "pending"]
    assert stored[-1].status == "finished" and stored[-1].bytes > 0


class SlowDouble(MapFunction):
    """A slow call (a model, a remote store): the pipeline takes long after the source is done."""

    def execute(self, x: int) -> int:
        threading.Event().wait(0.002)  # the work being slow, not a synchronisation
        return 2 * x


def test_a_source_that_ran_out_keeps_checkpoints_going_while_the_rest_drains(tmp_path: pathlib.Path) -> None:
    """A source that emitted its last record asks for a checkpoint behind it at once, and ends only when it
    completes: records become visible (and safe) while downstream still works, not only at the very end."""
    env = LocalEnvironment("drains", config={"checkpoint_interval": 3600.0, "checkpoint_dir": str(tmp_path),
                                             "queue_maxsize": 4096})
    results = env.from_batch(range(2000)).map(SlowDouble).collect()  # all 2000 fit in the queues at once
    job = env.submit()
    first = next(iter(results))  # visible before the ~4 s of work are over: a checkpoint completed early
    assert first == 0 and not job.done()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert [first, *results] == [2 * x for x in range(2000)]


def test_a_store_that_cannot_commit_fails_the_job_naming_the_checkpoint_control(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control thread stores the checkpoints; when the store fails there, the job fails (it used to hang:
    the source waited for a checkpoint that no thread would ever complete)."""
    import sqlite3

    from sage.kernel.runtime.checkpoint import CheckpointStore

    def commit(*args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(CheckpointStore, "commit", commit)
    env = LocalEnvironment("store-fails", config={"checkpoint_interval": 3600.0, "checkpoint_dir": str(tmp_path)})
    env.from_batch(range(100)).map(FailOnce, 0, threading.Event()).sink(lambda x: None)
    job = env.submit()
    with pytest.raises(JobFailedError, match=r"checkpoint control.*disk I/O error") as info:
        job.wait(JOB_TIMEOUT)
    assert info.value.task_name == "checkpoint control"
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_cancel_while_a_restart_builds_its_attempt_starts_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    from sage.kernel.runtime.dispatcher import Dispatcher
    from sage.kernel.runtime.supervisor import JobSupervisor

    building, cancelled, restarted = threading.Event(), threading.Event(), threading.Event()
    submitted: list[Dispatcher] = []
    last_checkpoint, restart, submit = JobSupervisor._last_checkpoint, JobSupervisor._restart, Dispatcher.submit

    def held_last_checkpoint(self: JobSupervisor) -> Any:
        building.set()  # the restart is under way: the test cancels the job now
        assert cancelled.wait(JOB_TIMEOUT)
        return last_checkpoint(self)

    def tracked_restart(self: JobSupervisor, *args: Any) -> None:
        try:
            restart(self, *args)
        finally:
            restarted.set()

    def tracked_submit(self: Dispatcher) -> None:
        submitted.append(self)
        submit(self)

    monkeypatch.setattr(JobSupervisor, "_last_checkpoint", held_last_checkpoint)
    monkeypatch.setattr(JobSupervisor, "_restart", tracked_restart)
    monkeypatch.setattr(Dispatcher, "submit", tracked_submit)
    env = LocalEnvironment("cancel-while-building", config={"restart_attempts": 1, "restart_delay": 0.01})
    env.from_batch(range(10)).map(AlwaysFails).collect()
    job = env.submit()
    assert building.wait(JOB_TIMEOUT), "the job never restarted"
    job.cancel()  # reaches the failed attempt: the new one is not built yet
    cancelled.set()
    assert restarted.wait(JOB_TIMEOUT), "the restart never returned"
    assert job.wait(JOB_TIMEOUT) == "cancelled"
    assert len(submitted) == 1  # only the first attempt ever started
    assert job.metrics()["job"]["attempt"] == 1  # the new attempt was built, then released unstarted
