"""Pipeline-as-service: concurrent callers, the in-flight bound, the reply rule, the job's end."""

from __future__ import annotations

import threading
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import FlatMapFunction, MapFunction

from .support import AT_ONCE, JOB_TIMEOUT, Gauge, run_probe, run_probes


def square(x: int) -> tuple[int, int]:
    return x, x * x


def test_concurrent_callers_each_get_the_answer_to_their_own_payload() -> None:
    env = LocalEnvironment("pipeline-callers")
    env.from_service("square", max_in_flight=4).map(square, parallelism=2).reply()

    def body(fn: MapFunction, k: int) -> int:
        payloads = range(k * 10_000, k * 10_000 + 300)
        wrong = sum(fn.call_service("square", x) != (x, x * x) for x in payloads)
        futures = {x: fn.call_service_async("square", -x) for x in payloads}
        return wrong + sum(f.result(JOB_TIMEOUT) != (-x, x * x) for x, f in futures.items())

    outcomes = run_probes(env, body, records=[1, 2, 3], parallelism=3)
    assert [(o.raised, o.value) for o in outcomes] == [(None, 0)] * 3
    assert len({o.task for o in outcomes}) == 3
    # The job finished on its own: the service pipeline stopped once the callers were done.
    bridge = env._job.metrics()["service_square_0"]
    assert bridge["status"] == "finished" and bridge["records_out"] == 3 * 600


class Crowd(MapFunction):
    """Counts the records inside this stage (all instances together) and meets `parties - 1` others."""

    def __init__(self, gauge: Gauge, barrier: threading.Barrier, broken: list[int]) -> None:
        self.gauge = gauge
        self.barrier = barrier
        self.broken = broken

    def execute(self, x: int) -> int:
        with self.gauge:
            try:
                self.barrier.wait(JOB_TIMEOUT)
            except threading.BrokenBarrierError:
                self.broken.append(x)
        return x


def test_max_in_flight_bounds_the_requests_inside_the_pipeline() -> None:
    """Six map instances could hold six requests; max_in_flight=3 lets exactly three in at a time."""
    gauge, broken = Gauge(), []
    env = LocalEnvironment("pipeline-in-flight")
    env.from_service("crowd", max_in_flight=3).map(Crowd, gauge, threading.Barrier(3), broken, parallelism=6).reply()
    outcome = run_probe(env, lambda fn, _: [f.result(JOB_TIMEOUT) for f in
                                            [fn.call_service_async("crowd", x) for x in range(30)]])
    assert outcome.raised is None and outcome.value == list(range(30))
    assert broken == []
    assert gauge.peak == 3


def test_wrong_method_or_arguments_give_a_clear_error() -> None:
    env = LocalEnvironment("pipeline-misuse")
    env.from_service("square").map(square).reply()

    def body(fn: MapFunction, _: Any) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for call in (lambda: fn.call_service("square", 2, method="lookup", timeout=10 * AT_ONCE),
                     lambda: fn.call_service("square", 1, 2, timeout=10 * AT_ONCE),
                     lambda: fn.call_service("square", 1, scale=2, timeout=10 * AT_ONCE)):
            try:
                call()
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        errors.append(fn.call_service("square", 3))  # the service still works
        return errors

    outcome = run_probe(env, body)
    assert outcome.seconds < AT_ONCE
    wrong_method, two_args, keywords, answer = outcome.value
    assert type(wrong_method) is AttributeError and "'square' has no method 'lookup' (it has: process)" in str(
        wrong_method)
    assert type(two_args) is TypeError and "got method 'process' with 2 argument(s)" in str(two_args)
    assert type(keywords) is TypeError and "keywords ['scale']" in str(keywords)
    assert answer == (3, 9)


def test_a_filtered_out_request_times_out_and_frees_its_slot_at_its_deadline() -> None:
    env = LocalEnvironment("pipeline-filter")
    env.from_service("positive", max_in_flight=2).filter(lambda x: x > 0).map(square).reply()

    def body(fn: MapFunction, _: Any) -> list[Any]:
        results: list[Any] = []
        # Three dropped requests: more than max_in_flight, so their slots must come back.
        for x in (-1, -2, -3):
            try:
                results.append(fn.call_service("positive", x, timeout=0.2))
            except TimeoutError as exc:
                results.append(str(exc))
        results.append(fn.call_service("positive", 5, timeout=JOB_TIMEOUT))
        return results

    outcome = run_probe(env, body)
    assert outcome.raised is None
    assert outcome.value == ["service 'positive' method 'process' gave no answer within 0.2 s"] * 3 + [(5, 25)]


def test_the_first_record_answers_and_later_ones_are_dropped_by_the_caller() -> None:
    env = LocalEnvironment("pipeline-flatmap")
    env.from_service("twice", max_in_flight=2).flatmap(lambda x: [("first", x), ("second", x)]).reply()

    def body(fn: MapFunction, _: Any) -> tuple[list[Any], int]:
        answers = [fn.call_service("twice", x) for x in range(20)]
        # One reply sink answers in order: each second answer reaches the caller before the next
        # call's first, so after one more call all 20 were read (the 21st may be on its way).
        fn.call_service("twice", 99)
        return answers, fn.ctx.service_caller.late_responses

    outcome = run_probe(env, body)
    answers, late = outcome.value
    assert answers == [("first", x) for x in range(20)]
    assert late in (20, 21)


def test_a_bounded_job_declared_before_its_service_pipeline_finishes() -> None:
    # The bounded part may end before the dispatcher has started the service
    # pipeline; the pipeline must still be stopped so the job finishes.
    for _ in range(10):
        env = LocalEnvironment("bounded-first")
        env.from_batch([1, 2, 3]).sink(lambda record: None)
        env.from_service("echo").map(lambda payload: payload).reply()
        assert env.submit().wait(JOB_TIMEOUT) == "finished"


class Double(MapFunction):
    def execute(self, record: int) -> int:
        return self.call_service("double", record)


def test_stop_drains_callers_of_a_pipeline_service_and_finishes() -> None:
    emitted: list[int] = []
    calls_seen = threading.Event()

    def source() -> int:
        emitted.append(len(emitted))
        if len(emitted) == 200:
            calls_seen.set()
        return emitted[-1]

    out: list[int] = []
    env = LocalEnvironment("stop-with-service", config={"service_timeout": 5.0})
    env.from_service("double").map(lambda payload: 2 * payload).reply()
    env.from_source(source).map(Double).sink(out.append)
    job = env.submit()
    assert calls_seen.wait(JOB_TIMEOUT)
    job.stop()
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert sorted(out) == [2 * x for x in range(len(emitted))]


class CollectThenReturn(FlatMapFunction):
    def execute(self, payload: str) -> list[str]:
        self.collect(f"collected:{payload}")
        return [f"returned:{payload}"]

    def close(self) -> None:
        self.collect("from close")  # answers no request: must not reach reply() as a bare payload


class AskOnce(MapFunction):
    def execute(self, record: str) -> Any:
        return self.call_service("parts", record, timeout=JOB_TIMEOUT)


def test_a_service_pipeline_flatmap_answers_with_its_collected_item_first() -> None:
    answers: list[Any] = []
    env = LocalEnvironment("flatmap-order")
    env.from_service("parts").flatmap(CollectThenReturn).reply()
    env.from_batch(["a", "b"]).map(AskOnce).sink(answers.append)
    assert env.submit().wait(JOB_TIMEOUT) == "finished"
    assert sorted(answers) == ["collected:a", "collected:b"]
