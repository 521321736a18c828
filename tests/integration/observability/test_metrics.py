"""Job metrics: busy/idle/backpressured shares, rates, queue load, services, Prometheus text, routing info."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sage.kernel import LocalEnvironment, StopSignal
from sage.kernel.api.function import MapFunction, SinkFunction, SourceFunction
from sage.kernel.api.job import Job
from sage.kernel.api.service import BaseService
from sage.kernel.observability.job_view import EVIDENCE_SECONDS, find_bottleneck
from sage.kernel.observability.rates import RateWindow, lifetime
from sage.kernel.testing import TestingSink

JOB_TIMEOUT = 20.0
WINDOW = 1.2 * EVIDENCE_SECONDS
"""Seconds of running time the shares are measured over (the measurement itself, not a synchronisation):
long enough for the bottleneck rule to take the shares as evidence."""


class HeldSink(SinkFunction):
    """Sets `entered` at its first record, then holds it until `release` is set (at most JOB_TIMEOUT)."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        self.entered, self.release = entered, release

    def execute(self, record: Any) -> None:
        self.entered.set()
        self.release.wait(JOB_TIMEOUT)


def assert_shares_add_up(metrics: dict[str, dict[str, Any]]) -> None:
    """Every task's three shares lie in [0, 1] and make one second per second; its times add up too."""
    for name, m in metrics.items():
        if m["kind"] in ("job", "collect"):
            continue
        shares = [m["busy_share"], m["idle_share"], m["backpressure_share"]]
        assert all(s is not None and 0.0 <= s <= 1.0 for s in shares), (name, shares)
        assert sum(shares) == pytest.approx(1.0, abs=0.02), (name, shares)
        total = m["busy_seconds"] + m["idle_seconds"] + m["backpressure_seconds"]
        assert total == pytest.approx(m["elapsed_seconds"], abs=1e-3), name


def metrics_over_a_window(job: Job, then: threading.Event) -> dict[str, dict[str, Any]]:
    """`job.metrics()` over the next WINDOW seconds; sets `then` afterwards, whatever happened."""
    try:
        job.metrics()  # the baseline of the window
        time.sleep(WINDOW)  # the window measured, not a synchronisation
        return job.metrics()
    finally:
        then.set()


def metrics_over_a_still_window(job: Job) -> dict[str, dict[str, Any]]:
    """`job.metrics()` over the first window (WINDOW seconds or more) in which no task took or emitted a record.

    A job whose sink holds a record comes to rest once every queue before
    the sink is full: from then on each task upstream waits for room,
    whatever the machine's load, and how soon that happens does not matter.
    """
    deadline = time.monotonic() + JOB_TIMEOUT
    job.metrics()  # the baseline of the first window
    while True:
        time.sleep(WINDOW)  # the window measured, not a synchronisation
        metrics = job.metrics()
        rates = [m[key] for m in metrics.values() if m["kind"] != "job"
                 for key in ("records_in_per_second", "records_out_per_second")]
        if all(rate == 0.0 for rate in rates):
            return metrics
        assert time.monotonic() < deadline, f"records still moving after {JOB_TIMEOUT} s: {metrics}"


def test_a_held_sink_is_busy_its_upstream_backpressured_and_it_is_the_bottleneck() -> None:
    entered, release = threading.Event(), threading.Event()
    env = LocalEnvironment("held-sink", config={"queue_maxsize": 64, "batch_size": 16})
    env.from_batch(range(5000)).map(lambda x: x + 1).sink(HeldSink, entered, release)
    job = env.submit()
    try:
        assert entered.wait(JOB_TIMEOUT), "the sink never got a record"
        metrics = metrics_over_a_still_window(job)
    finally:
        release.set()
    assert job.wait(JOB_TIMEOUT) == "finished"

    assert_shares_add_up(metrics)
    sink, mapper, source = metrics["HeldSink_0"], metrics["map_0"], metrics["from_batch_0"]
    assert sink["rate_window_seconds"] >= WINDOW
    assert sink["window_running_seconds"] >= WINDOW  # the sink ran through the whole window
    # The sink spent the window inside its function; everything upstream waited for room.
    assert sink["busy_share"] > 0.95
    assert mapper["backpressure_share"] > 0.9 and source["backpressure_share"] > 0.9
    assert sink["input_queue_load"] == 1.0 and mapper["input_queue_load"] == 1.0
    assert sink["input_queue_size"] == sink["input_queue_maxsize"] == 64
    assert source["input_queue_load"] is None  # a source has no input queue
    assert find_bottleneck(metrics) == "HeldSink_0"


def test_shares_stay_between_0_and_1_when_counters_are_read_a_moment_apart() -> None:
    # A task blocked through a whole window: its counters, read one after another, put a few
    # nanoseconds more of backpressure than of running time into the window.
    now = [0.0]
    window = RateWindow(clock=lambda: now[0])

    def blocked(elapsed: float, busy: float) -> dict[str, dict[str, Any]]:
        return {"map_0": {"kind": "map", "status": "running", "records_in": 7, "records_out": 7,
                          "elapsed_seconds": elapsed, "busy_seconds": busy, "idle_seconds": 0.0,
                          "backpressure_seconds": elapsed - busy}}

    window.annotate(blocked(10.0, 2e-6))
    now[0] = 2.0
    m = window.annotate(blocked(12.0, 2e-6 - 1e-8))["map_0"]
    assert m["busy_share"] == 0.0 and m["backpressure_share"] == 1.0 and m["idle_share"] == 0.0
    assert lifetime(blocked(1.0, -1e-9))["map_0"]["busy_share"] == 0.0


def test_a_bottleneck_is_named_only_on_a_second_of_evidence() -> None:
    def busy_task(elapsed: float) -> dict[str, dict[str, Any]]:
        return {"map_0": {"kind": "map", "status": "running", "records_in": 10, "records_out": 10,
                          "elapsed_seconds": elapsed, "busy_seconds": elapsed, "idle_seconds": 0.0,
                          "backpressure_seconds": 0.0}}

    # Busy all of its life, but it lived 4 ms: no evidence of anything (a job that "ran 0.00 s").
    assert find_bottleneck(lifetime(busy_task(0.004)), running_only=False) is None
    assert find_bottleneck(lifetime(busy_task(EVIDENCE_SECONDS)), running_only=False) == "map_0"
    # Over a window: the running time inside the window counts, not the task's age.
    now = [0.0]
    window = RateWindow(clock=lambda: now[0])
    window.annotate(busy_task(100.0))
    now[0] = 0.6 * EVIDENCE_SECONDS
    assert find_bottleneck(window.annotate(busy_task(100.0 + now[0]))) is None
    now[0] = 1.5 * EVIDENCE_SECONDS
    assert find_bottleneck(window.annotate(busy_task(100.0 + now[0]))) == "map_0"


class Trickle(SourceFunction):
    """Has nothing to give until `go` is set, then ends the stream; sets `polled` at its first poll."""

    def __init__(self, go: threading.Event, polled: threading.Event) -> None:
        self.go, self.polled = go, polled

    def execute(self) -> Any:
        self.polled.set()
        return StopSignal("done") if self.go.is_set() else None


class Opened(MapFunction):
    """Passes records on; sets `opened` when its task starts."""

    def __init__(self, opened: threading.Event) -> None:
        self.opened = opened

    def open(self) -> None:
        self.opened.set()

    def execute(self, x: Any) -> Any:
        return x


class OpenedSink(TestingSink):
    def __init__(self, out: list[Any], opened: threading.Event) -> None:
        super().__init__(out)
        self.opened = opened

    def open(self) -> None:
        self.opened.set()


def test_tasks_waiting_for_input_are_idle_and_nothing_is_a_bottleneck() -> None:
    go = threading.Event()
    started = [threading.Event() for _ in range(3)]
    out: list[Any] = []
    env = LocalEnvironment("idle")
    env.from_source(Trickle, go, started[0]).map(Opened, started[1]).sink(OpenedSink, out, started[2])
    job = env.submit()
    if not all(event.wait(JOB_TIMEOUT) for event in started):
        go.set()
        pytest.fail("a task never started")
    metrics = metrics_over_a_window(job, then=go)
    assert job.wait(JOB_TIMEOUT) == "finished"

    assert_shares_add_up(metrics)
    for name in ("Trickle_0", "Opened_0", "OpenedSink_0"):
        assert metrics[name]["idle_share"] > 0.9, name
    assert find_bottleneck(metrics) is None


SPIN_RECORDS = 300
SPIN_SECONDS = 1.5 * EVIDENCE_SECONDS / SPIN_RECORDS


class Spin(SinkFunction):
    """A slow sink: a busy loop of SPIN_SECONDS per record (no waiting: it holds the CPU)."""

    def execute(self, record: int) -> None:
        end = time.perf_counter() + SPIN_SECONDS
        while time.perf_counter() < end:
            pass


def test_over_a_whole_run_the_slow_sink_has_the_largest_busy_share() -> None:
    env = LocalEnvironment("spin", config={"queue_maxsize": 16, "batch_size": 8})
    env.from_batch(range(SPIN_RECORDS)).map(lambda x: x).sink(Spin)
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"
    metrics = job.metrics()  # first call: figures over each task's whole life

    assert_shares_add_up(metrics)
    # (Upstream shares are not asserted: a thread waiting for the interpreter lock, which the
    # spinning sink holds, counts as busy, so they depend on how the threads were scheduled.)
    spin = metrics["Spin_0"]
    assert spin["busy_share"] > max(spin["idle_share"], spin["backpressure_share"])
    assert spin["records_in"] == SPIN_RECORDS
    assert spin["records_in_per_second"] == pytest.approx(SPIN_RECORDS / spin["elapsed_seconds"])
    assert find_bottleneck(metrics, running_only=False) == "Spin_0"  # busy over half its life, not held back
    assert find_bottleneck(metrics) is None  # nothing runs any more


def test_rate_window_uses_snapshots_a_few_seconds_old() -> None:
    now = [0.0]
    window = RateWindow(span=3.0, min_span=0.5, clock=lambda: now[0])

    def task(records: int, elapsed: float, idle: float) -> dict[str, dict[str, Any]]:
        return {"t_0": {"kind": "map", "status": "running", "records_in": records, "records_out": records,
                        "elapsed_seconds": elapsed, "busy_seconds": elapsed - idle, "idle_seconds": idle,
                        "backpressure_seconds": 0.0}}

    first = window.annotate(task(100, 10.0, 5.0))["t_0"]
    assert first["records_in_per_second"] == 10.0 and first["busy_share"] == 0.5  # whole life
    now[0] = 0.1
    too_close = window.annotate(task(200, 10.1, 5.0))["t_0"]
    assert too_close["rate_window_seconds"] == pytest.approx(10.1)  # a 0.1 s window would only be noise
    for second in range(1, 6):
        now[0] = float(second)
        latest = window.annotate(task(100 + 1000 * second, 10.0 + second, 5.0 + 0.25 * second))["t_0"]
    # At t=5 the window reaches back to the newest snapshot at least 3 s old: t=2.
    assert latest["rate_window_seconds"] == pytest.approx(3.0)
    assert latest["records_in_per_second"] == pytest.approx(1000.0)
    assert latest["idle_share"] == pytest.approx(0.25) and latest["busy_share"] == pytest.approx(0.75)


class Echo(BaseService):
    def process(self, x: int) -> int:
        if x == 13:
            raise ValueError("unlucky")
        return x


class CallEcho(MapFunction):
    def execute(self, x: int) -> int:
        try:
            return self.call_service("echo", x)
        except Exception:
            return -1


def test_service_metrics_count_calls_per_caller_with_latency() -> None:
    out: list[Any] = []
    env = LocalEnvironment("svc-metrics")
    env.register_service("echo", Echo)
    env.from_batch(range(50)).map(CallEcho, parallelism=2).sink(TestingSink, out)
    job = env.submit(autostop=True)

    service = job.metrics()["service:echo"]
    assert service["service"] == "echo" and service["kind"] == "service"
    assert service["calls"] == 50 and service["errors"] == 1
    assert service["callers"] == {"CallEcho_0": 25, "CallEcho_1": 25}
    assert 0 < service["latency_p50"] <= service["latency_p99"] <= service["latency_sum"]
    assert sorted(out) == sorted([-1] + [x for x in range(50) if x != 13])


def test_prometheus_text_is_accepted_by_the_parser_and_matches_the_dict() -> None:
    out: list[Any] = []
    env = LocalEnvironment('we"ird\\name', config={"queue_maxsize": 32})
    env.register_service("echo", Echo)
    env.from_batch(range(40)).map(CallEcho).map(lambda x: 1 // (x - 5), on_error="skip").sink(TestingSink, out)
    job = env.submit(autostop=True)

    plain = job.metrics()
    families = {f.name: f for f in text_string_to_metric_families(job.metrics(format="prometheus"))}
    assert families["sage_task_records_in"].type == "counter"
    assert families["sage_task_busy_ratio"].type == "gauge"
    assert families["sage_service_latency_seconds"].type == "summary"
    assert families["sage_job_running"].samples[0].value == 0

    records_in = {s.labels["task"]: s for s in families["sage_task_records_in"].samples}
    assert set(records_in) == {name for name, m in plain.items() if m["kind"] not in ("service", "job")}
    assert families["sage_job_restarts"].samples[0].value == 0 == plain["job"]["restarts"]
    sample = records_in["map_0"]
    assert sample.name == "sage_task_records_in_total"
    assert sample.labels == {"job": job.job_id, "task": "map_0", "operator": "map"}  # quotes survived
    assert sample.value == plain["map_0"]["records_in"] == 40
    errors = {s.labels["task"]: s.value for s in families["sage_task_errors"].samples}
    assert errors["map_0"] == 1 and errors["TestingSink_0"] == 0
    busy = {s.labels["task"]: s.value for s in families["sage_task_busy_seconds"].samples}
    assert busy["CallEcho_0"] == plain["CallEcho_0"]["busy_seconds"]  # an ended job's counters stay put

    latency = {(s.name, s.labels.get("quantile")): s.value for s in families["sage_service_latency_seconds"].samples}
    assert latency[("sage_service_latency_seconds_count", None)] == 40
    assert latency[("sage_service_latency_seconds", "0.99")] >= latency[("sage_service_latency_seconds", "0.5")]
    callers = families["sage_service_caller_calls"].samples
    assert [(s.labels["caller"], s.value) for s in callers] == [("CallEcho_0", 40)]
    assert len(out) == 39


def test_metrics_rejects_an_unknown_format() -> None:
    env = LocalEnvironment("fmt")
    env.from_batch([1]).sink(TestingSink, [])
    job = env.submit(autostop=True)
    with pytest.raises(ValueError, match="prometheus"):
        job.metrics(format="json")


class RecordRouting(MapFunction):
    """Stores what `ctx.get_routing_info()` says, seen from inside the running task."""

    def __init__(self, seen: list[dict[str, Any]]) -> None:
        self.seen = seen

    def open(self) -> None:
        self.seen.append(self.ctx.get_routing_info())

    def execute(self, x: Any) -> Any:
        return x


def test_routing_info_gives_every_group_its_strategy() -> None:
    seen: list[dict[str, Any]] = []
    env = LocalEnvironment("routing")
    keyed = env.from_batch(range(20)).keyby(lambda x: x % 3).map(RecordRouting, seen, parallelism=2)
    plain = env.from_batch(range(5))
    keyed.connect(plain).map(lambda x: x, parallelism=2).sink(TestingSink, [])
    env.from_batch(range(4)).keyby(lambda x: x, strategy="broadcast").sink(TestingSink, [], parallelism=2)
    job = env.submit(autostop=True)

    info = job.routing_info()
    strategies = {name: [g["strategy"] for g in node["groups"].values()] for name, node in info.items()}
    assert strategies["keyby_0"] == ["hash"]
    assert strategies["RecordRouting_0"] == strategies["RecordRouting_1"] == ["hash"]  # a keyed stream stays keyed
    assert strategies["from_batch2_0"] == ["round_robin"]
    assert strategies["map_0"] == ["mixed"]  # hash-keyed and unkeyed records share its output
    assert strategies["keyby2_0"] == ["broadcast"]
    group = info["keyby_0"]["groups"][0]
    assert group["target_names"] == ["RecordRouting_0", "RecordRouting_1"]
    assert group["queue_ids"] == [f"{job.job_id}.RecordRouting_0.in", f"{job.job_id}.RecordRouting_1.in"]
    assert info["keyby_0"]["operator"] == "keyby" and info["map_0"]["upstream_names"] == [
        "RecordRouting_0", "RecordRouting_1", "from_batch2_0"]
    # The same, from inside a running task.
    inside = {i["name"]: i for i in seen}
    assert inside["RecordRouting_1"]["groups"][0]["strategy"] == "hash"
    assert inside["RecordRouting_1"]["groups"][0]["target_names"] == ["map_0", "map_1"]
