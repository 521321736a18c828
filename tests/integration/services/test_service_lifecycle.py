"""Service lifecycle and concurrency: hooks once, order against tasks, max_concurrency, job end."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest

from sage.kernel import JobFailedError, LocalEnvironment
from sage.kernel.api.function import MapFunction, SinkFunction
from sage.kernel.api.service import BaseService
from sage.kernel.runtime.communication.queue_descriptor import PythonQueueDescriptor
from sage.kernel.runtime.service.protocol import ServiceRequest

from .support import AT_ONCE, JOB_TIMEOUT, Gauge, Probe, finish, run_probe

WINDOW = 0.3
"""Seconds a held request leaves for a second one to enter when max_concurrency=1 forbids it."""


class Meter(BaseService):
    """Measures how many requests are inside at once.

    `process` meets the other `parties - 1` requests at a barrier (so with
    enough workers the overlap is certain); `hold` stays inside until
    `release` is set; `probe` reports how many were inside when it entered.
    """

    def __init__(self, gauge: Gauge, parties: int, release: threading.Event) -> None:
        self.gauge = gauge
        self.barrier = threading.Barrier(parties)
        self.release = release

    def process(self, i: int) -> int:
        with self.gauge:
            self.barrier.wait(JOB_TIMEOUT)
        return i

    def hold(self) -> bool:
        with self.gauge:
            return self.release.wait(JOB_TIMEOUT)

    def probe(self) -> int:
        with self.gauge:
            return self.gauge.active


def test_max_concurrency_4_runs_four_requests_at_once_and_never_more() -> None:
    gauge = Gauge()
    env = LocalEnvironment("concurrency-4")
    env.register_service("meter", Meter, gauge, 4, threading.Event(), max_concurrency=4)
    # 12 requests at once: three rounds of 4 that can only pass the barrier together.
    outcome = run_probe(env, lambda fn, _: [f.result(JOB_TIMEOUT) for f in
                                            [fn.call_service_async("meter", i) for i in range(12)]])
    assert outcome.raised is None and outcome.value == list(range(12))
    assert gauge.peak == 4


@pytest.mark.parametrize(("max_concurrency", "wait", "expected"), [
    (1, WINDOW, (False, True, 1)),  # the probe must not get in while "hold" is inside
    (4, JOB_TIMEOUT, (True, True, 2)),  # the probe must get in while "hold" is inside
])
def test_a_second_request_gets_in_while_one_is_held_only_above_max_concurrency_1(
        max_concurrency: int, wait: float, expected: tuple[bool, bool, int]) -> None:
    gauge, release = Gauge(), threading.Event()
    env = LocalEnvironment(f"concurrency-{max_concurrency}-held")
    env.register_service("meter", Meter, gauge, 1, release, max_concurrency=max_concurrency)

    def body(fn: MapFunction, _: Any) -> Any:
        held: Future = fn.call_service_async("meter", method="hold")
        probe: Future = fn.call_service_async("meter", method="probe")
        try:
            probe.result(wait)
            answered_while_held = True
        except TimeoutError:
            answered_while_held = False
        release.set()
        return answered_while_held, held.result(JOB_TIMEOUT), probe.result(JOB_TIMEOUT)

    outcome = run_probe(env, body)
    assert outcome.raised is None
    assert outcome.value == expected
    assert gauge.peak == expected[2]


class Journal(BaseService):
    """Writes every lifecycle step into a shared list."""

    def __init__(self, log: list[str], requested: threading.Event) -> None:
        log.append("init")
        self.log = log
        self.requested = requested

    def setup(self) -> None:
        # Holds until a task has sent a request: that request waits in the queue for setup().
        assert self.requested.wait(JOB_TIMEOUT)
        self.log.append("setup")

    def process(self, x: int) -> int:
        self.log.append("call")
        return x + 1

    def cleanup(self) -> None:
        self.log.append("cleanup")


class CallOnOpen(MapFunction):
    def __init__(self, log: list[str], requested: threading.Event) -> None:
        self.log = log
        self.requested = requested

    def open(self) -> None:
        future = self.call_service_async("journal", 0)
        self.requested.set()
        self.log.append(f"open got {future.result(JOB_TIMEOUT)}")

    def execute(self, x: int) -> int:
        return self.call_service("journal", x)


class LogOnClose(SinkFunction):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def execute(self, data: int) -> None:
        self.log.append(f"sink {data}")

    def close(self) -> None:
        self.log.append("sink closed")


def test_hooks_run_once_around_every_call_and_a_bounded_job_finishes_after_cleanup() -> None:
    log: list[str] = []
    requested = threading.Event()
    env = LocalEnvironment("lifecycle")
    env.register_service("journal", Journal, log, requested)
    env.from_batch([10, 20]).map(CallOnOpen, log, requested).sink(LogOnClose, log)
    job = env.submit()
    assert finish(job) == "finished"
    # The request sent in open() waited for setup(); by the time wait() returns, cleanup has
    # run, once, after every task (the sink closed last among them).
    assert log[:4] == ["init", "setup", "call", "open got 1"]
    assert sorted(log[4:-2]) == ["call", "call", "sink 11", "sink 21"]
    assert log[-2:] == ["sink closed", "cleanup"]
    assert job.metrics()["service:journal"]["status"] == "finished"


class BrokenSetup(BaseService):
    def setup(self) -> None:
        raise OSError("index file missing")

    def process(self, x: int) -> int:
        return x


class BrokenInit(BaseService):
    def __init__(self) -> None:
        raise OSError("model file missing")


@pytest.mark.parametrize(("service_class", "message"), [(BrokenSetup, "index file missing"),
                                                     (BrokenInit, "model file missing")])
def test_a_failing_setup_or_init_fails_the_job_naming_the_service(service_class, message) -> None:
    env = LocalEnvironment("broken-setup")
    env.register_service("index", service_class)
    env.from_batch([1]).sink(lambda x: None)
    job = env.submit()
    with pytest.raises(JobFailedError, match="service:index") as info:
        job.wait(JOB_TIMEOUT)
    assert type(info.value.__cause__) is OSError and str(info.value.__cause__) == message
    assert job.metrics()["service:index"]["status"] == "failed"


def test_a_job_of_only_idle_services_and_a_source_finishes() -> None:
    """Services never keep a bounded job alive, even when nobody calls them."""
    env = LocalEnvironment("idle-services")
    env.register_service("one", Meter, Gauge(), 1, threading.Event())
    env.register_service("four", Meter, Gauge(), 4, threading.Event(), max_concurrency=4)
    env.from_batch(range(3)).sink(lambda x: None)
    job = env.submit()
    assert finish(job) == "finished"
    assert {job.metrics()[f"service:{name}"]["status"] for name in ("one", "four")} == {"finished"}


def test_cancelling_the_job_ends_a_task_waiting_on_a_call() -> None:
    gauge, release = Gauge(), threading.Event()
    env = LocalEnvironment("cancel-waiting-caller")
    env.register_service("meter", Meter, gauge, 1, release)
    env.from_batch([0]).map(Probe, lambda fn, _: fn.call_service("meter", method="hold", timeout=10 * JOB_TIMEOUT)
                            ).sink(lambda x: None)
    job = env.submit()
    try:
        assert gauge.entered.wait(JOB_TIMEOUT)  # the call is sent and its caller waits
        job.cancel()
        task = job.run._control.dispatcher.tasks["Probe_0"]
        task.thread.join(AT_ONCE)  # the waiting call re-checks the cancel flag within its listen wait
        assert not task.thread.is_alive()
        assert task.task.status == "cancelled"
    finally:
        release.set()
    assert job.status == "cancelled"


def test_requests_still_queued_when_a_service_stops_are_answered_with_service_stopped() -> None:
    gauge, release = Gauge(), threading.Event()
    answers = PythonQueueDescriptor(maxsize=0)  # stands in for a caller's response queue
    env = LocalEnvironment("stop-refuses-queued")
    env.register_service("meter", Meter, gauge, 1, release)

    def body(fn: MapFunction, _: Any) -> None:
        fn.call_service_async("meter", method="hold")  # occupies the only worker past the tasks' end
        assert gauge.entered.wait(JOB_TIMEOUT)
        fn.ctx.service_qds["meter"].put(ServiceRequest("queued-1", "meter", "probe", (), {},
                                                       time.time() + JOB_TIMEOUT, answers, "test"))

    env.from_batch([0]).map(Probe, body).sink(lambda x: None)
    job = env.submit()
    try:
        service = job.run._control.dispatcher.services["meter"].task
        assert service.ctx.stop_event.wait(JOB_TIMEOUT)  # every task has finished: the service is stopping
    finally:
        release.set()
    assert finish(job) == "finished"
    response = answers.get(timeout=JOB_TIMEOUT)
    assert (response.request_id, response.ok) == ("queued-1", False)
    # No exception object travels, so the caller raises ServiceCallError(remote_type="ServiceStopped").
    failure = response.failure
    assert (failure.error, failure.type_name, failure.message) == (
        None, "ServiceStopped", "the service stopped before answering")
