"""A loop's life: stop lets records in the loop finish their trips, cancel ends at once, a failure fails
the job, a restart restores what was on the feedback edges, and the views show the loop."""

from __future__ import annotations

import io
import pathlib
import threading
import time
from typing import Any

import pytest
from rich.console import Console

from sage.kernel import JobFailedError, LocalEnvironment
from sage.kernel.api.function import FlatMapFunction, MapFunction, SourceFunction
from sage.kernel.observability.graph_export import to_dot, to_mermaid
from sage.kernel.observability.job_view import operator_rows
from sage.kernel.observability.live_view import Monitor, job_panel
from sage.kernel.observability.topology import topology
from sage.kernel.runtime.checkpoint.snapshot import decode
from sage.kernel.runtime.checkpoint.store import CheckpointStore
from sage.kernel.runtime.job_manager import job_manager
from sage.kernel.testing import wait_until

from .test_collatz import CollatzStep, collatz_steps

JOB_TIMEOUT = 120.0


class Counting(SourceFunction):
    """1, 2, 3, ... as (n, 0, n), without end."""

    def __init__(self) -> None:
        self.n = 0

    def execute(self) -> tuple[int, int, int]:
        self.n += 1
        return self.n, 0, self.n


def collatz_on(env: Any, source: Any, step: Any = CollatzStep, *args: Any, loop: Any = None, feed: Any = None) -> Any:
    """Collatz through a loop: `source` and what goes round (`feed`, default the future) into `step`."""
    loop = loop if loop is not None else env.from_future("again")
    stepped = source.connect(feed if feed is not None else loop).map(step, *args, parallelism=2)
    stepped.filter(lambda r: r[0] != 1).fill_future(loop)
    return stepped.filter(lambda r: r[0] == 1).collect()


def test_stop_ends_the_sources_and_lets_records_in_the_loop_finish_their_trips() -> None:
    env = LocalEnvironment("loop-stop")
    results = collatz_on(env, env.from_source(Counting))
    job = env.submit()
    seen = []
    for record in results:  # read while the job runs: the loop keeps going until stopped
        seen.append(record)
        if len(seen) == 2_000:
            job.stop()
    job.wait(JOB_TIMEOUT)
    assert job.status == "finished"
    starts = sorted(start for _, _, start in seen)
    assert starts == list(range(1, len(starts) + 1))  # every number the source emitted came out, once
    assert all(steps == collatz_steps(start) for _, steps, start in seen)


def test_an_operator_outside_the_loop_may_read_the_future() -> None:
    env = LocalEnvironment("loop-monitor")
    loop = env.from_future("again")
    results = collatz_on(env, env.from_batch([(n, 0, n) for n in range(1, 201)]), CollatzStep, loop=loop)
    watched = loop.map(lambda record: record[2]).collect()  # every record that went round, seen from outside
    job = env.submit(autostop=True)
    assert sorted(start for _, _, start in results) == list(range(1, 201))
    assert len(list(watched)) == job.metrics()["filter_0"]["fed_back"] == sum(
        collatz_steps(n) for n in range(2, 201)) - 199


class Forever(MapFunction):
    """Sends every record round again, without end."""

    def execute(self, record: Any) -> Any:
        return record


def test_cancel_ends_a_loop_that_would_never_end() -> None:
    env = LocalEnvironment("loop-cancel", config={"queue_maxsize": 4})
    loop = env.from_future("again")
    step = env.from_batch(range(10)).connect(loop).map(Forever, parallelism=2)
    step.filter(lambda r: True).fill_future(loop)
    step.filter(lambda r: False).sink(print)
    job = env.submit()
    wait_until(lambda: sum(m.get("fed_back", 0) for m in job.metrics().values() if isinstance(m, dict)) > 1_000,
               timeout=JOB_TIMEOUT, message="records never went round")
    assert job.status == "running"  # a loop whose records never leave keeps a bounded job running
    job.cancel()
    job.wait(JOB_TIMEOUT)
    assert job.status == "cancelled"


class FailAt(MapFunction):
    def execute(self, record: Any) -> Any:
        if record[0] == 4_616:  # reached from 27 after 25 steps
            raise ValueError("bad number 4616")
        return CollatzStep().execute(record)


def test_a_failing_function_in_the_loop_fails_the_job_naming_its_task() -> None:
    env = LocalEnvironment("loop-failure")
    collatz_on(env, env.from_batch([(n, 0, n) for n in range(1, 100)]), FailAt)
    with pytest.raises(JobFailedError, match=r"FailAt_\d.*bad number 4616"):
        env.submit(autostop=True)


class EmitsOnClose(FlatMapFunction):
    def execute(self, n: int) -> list[int]:
        return [n - 1]

    def close(self) -> None:
        for k in range(50):  # more than the next loop member's queue holds
            self.collect(1_000 + k)


def test_records_emitted_into_a_loop_that_has_ended_fail_the_job() -> None:
    env = LocalEnvironment("loop-close-emits", config={"queue_maxsize": 4})
    loop = env.from_future("again")
    stepped = env.from_batch([3, 2]).connect(loop).flatmap(EmitsOnClose).map(lambda n: n)
    stepped.filter(lambda n: 0 < n < 1_000).fill_future(loop)
    stepped.filter(lambda n: n <= 0).sink(lambda n: None)
    with pytest.raises(JobFailedError, match=r"EmitsOnClose_0.*after the loop ended"):
        env.submit(autostop=True)


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_loop_entered_away_from_the_operator_reading_the_future(tmp_path: pathlib.Path, checkpoints: bool) -> None:
    # future -> relay; numbers enter at the step, which reads the relay: with checkpoints the relay
    # (its only input the feedback edge) starts the loop's barriers itself.
    config = {"checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path)} if checkpoints else {}
    env = LocalEnvironment("loop-entry", config=config)
    loop = env.from_future("again")
    relay = loop.map(lambda record: record)
    results = collatz_on(env, env.from_batch([(n, 0, n) for n in range(1, 301)]), loop=loop, feed=relay)
    job = env.submit(autostop=True)
    records = list(results)
    assert sorted(start for _, _, start in records) == list(range(1, 301))
    assert all(steps == collatz_steps(start) for _, steps, start in records)
    if checkpoints:
        assert job.metrics()["job"]["checkpoints"]["last_status"] == "finished"


class FailAfterLoggedCheckpoint(MapFunction):
    """A Collatz step that fails once, as soon as a complete checkpoint holds records that were
    travelling a feedback edge at its cut: the restart must restore them."""

    def __init__(self, directory: str, failed: threading.Event, logged: list[int]) -> None:
        self.directory, self.failed, self.logged = directory, failed, logged
        self.seen = 0

    def execute(self, record: Any) -> Any:
        self.seen += 1
        if not self.failed.is_set() and self.seen % 500 == 0:
            fed_back = self._logged_in_last_checkpoint()
            if fed_back:
                self.logged.append(fed_back)
                self.failed.set()
                raise RuntimeError("injected after a checkpoint with fed-back records")
        return CollatzStep().execute(record)

    def _logged_in_last_checkpoint(self) -> int:
        store = CheckpointStore(self.directory)
        latest = store.latest_run("loop-restart")
        last = store.last("loop-restart", latest[0]) if latest else None
        if last is None:
            return 0
        parts = store.load("loop-restart", last.run, last.checkpoint_id)
        return sum(len(decode(entry)[1]) for part in parts.values() for entry in decode(part).get("fed_back", []))

    def get_state(self) -> int:
        return self.seen

    def restore_state(self, state: int) -> None:
        self.seen = state


@pytest.mark.parametrize("transport", ["python", "rpc"])
def test_a_restart_restores_the_records_on_the_feedback_edges_exactly_once(tmp_path: pathlib.Path,
                                                                           transport: str) -> None:
    failed, logged = threading.Event(), []
    env = LocalEnvironment("loop-restart", config={
        "transport": transport, "checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path),
        "restart_attempts": 1, "restart_delay": 0.01, "queue_maxsize": 64, "batch_size": 16})
    count = 8_000
    results = collatz_on(env, env.from_batch([(n, 0, n) for n in range(1, count + 1)]),
                         FailAfterLoggedCheckpoint, str(tmp_path), failed, logged)
    job = env.submit(autostop=True)
    assert failed.is_set() and logged and job.metrics()["job"]["restarts"] == 1
    records = list(results)
    assert sorted(start for _, _, start in records) == list(range(1, count + 1))  # none lost, none twice
    assert all(steps == collatz_steps(start) for _, steps, start in records)


def test_checkpoints_go_on_while_a_loop_runs_after_its_sources_ended(tmp_path: pathlib.Path) -> None:
    release = threading.Event()
    env = LocalEnvironment("loop-drain", config={"checkpoint_interval": 0.02, "checkpoint_dir": str(tmp_path)})
    loop = env.from_future("again")
    # Round and round until released; the map decides once per trip, so a record never both leaves and stays.
    step = env.from_batch([(k, False) for k in range(10)]).connect(loop).map(
        lambda record: (record[0], release.is_set()), parallelism=2)
    step.filter(lambda record: not record[1]).fill_future(loop)
    out = step.filter(lambda record: record[1]).collect()
    job = env.submit()

    def checkpoints() -> int:
        return int(job.metrics()["job"]["checkpoints"]["completed"])

    wait_until(lambda: job.metrics()["from_batch_0"]["status"] == "finished", timeout=JOB_TIMEOUT,
               message="the source never finished")
    after_source = checkpoints()
    # The loop's entry injects the barriers now that the source has ended.
    wait_until(lambda: checkpoints() >= after_source + 3, timeout=JOB_TIMEOUT,
               message="no checkpoint completed after the source ended")
    release.set()
    job.wait(JOB_TIMEOUT)
    assert job.status == "finished" and sorted(k for k, _ in out) == list(range(10))


def test_the_views_show_the_feedback_edge_and_count_records_fed_back() -> None:
    monitor = Monitor("plain", stream=io.StringIO())
    job_manager().add_listener(monitor)
    try:
        env = LocalEnvironment("loop-views")
        results = collatz_on(env, env.from_batch([(n, 0, n) for n in range(1, 301)]))
        job = env.submit(autostop=True)
    finally:
        job_manager().remove_listener(monitor)
    assert len(list(results)) == 300
    fed_back = sum(collatz_steps(n) for n in range(2, 301)) - 299
    metrics = job.metrics()
    assert metrics["filter_0"]["fed_back"] == fed_back and metrics["CollatzStep_0"]["fed_back"] == 0
    assert f'sage_task_fed_back_total{{job="{job.job_id}",task="filter_0"' in job.metrics(format="prometheus")

    [watched] = monitor.watched()
    rows = operator_rows(watched.graph, watched.metrics())
    assert [row.name for row in rows if row.fed_back] == ["filter"] and "again" not in [row.name for row in rows]
    console = Console(file=io.StringIO(), width=200)
    console.print(job_panel(watched, watched.metrics(), False, time.monotonic()))
    assert f"filter ↺ {fed_back:,} fed back" in console.file.getvalue()

    drawn = topology(watched.graph, "loop-views")
    names = {op.id: op.name for op in drawn.operators}
    feedback = [(names[e.source], names[e.target], e.input_index) for e in drawn.edges if e.feedback]
    assert feedback == [("filter", "CollatzStep", 1)]
    assert "again" not in names.values()  # a future is drawn as its feedback edge
    assert "==>|feedback, round_robin, input 1|" in to_mermaid(drawn)
    assert 'style=bold, color="#c62828", constraint=false, label="feedback, round_robin, input 1"' in to_dot(drawn)
