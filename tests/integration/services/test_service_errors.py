"""Service errors in the caller: same type when it travels, ServiceCallError when not; timeouts; late answers."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from sage.kernel import LocalEnvironment, ServiceCallError
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService

from .support import JOB_TIMEOUT, run_probe


class LexiconError(Exception):
    """A user exception type defined at module level: it pickles by reference, so it travels."""


class LockedError(Exception):
    """Holds a lock, so it cannot be pickled and cannot travel."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class Faulty(BaseService):
    def process(self, word: str) -> int:
        raise LexiconError(f"no entry for {word!r}")

    def locked(self) -> None:
        raise LockedError("cannot pickle me")


def test_a_service_exception_keeps_its_type_with_the_remote_traceback_as_a_note() -> None:
    env = LocalEnvironment("error-type")
    env.register_service("lexicon", Faulty)
    outcome = run_probe(env, lambda fn, _: fn.call_service("lexicon", "zebra"))
    error = outcome.raised
    assert type(error) is LexiconError
    assert str(error) == "no entry for 'zebra'"
    (note,) = error.__notes__
    assert "service 'lexicon' method 'process'" in note
    assert "remote traceback" in note and "in process" in note and "LexiconError" in note
    # An error answer fails the call, not the service or the job.
    assert env._job.status == "finished"
    assert env._job.metrics()["service:lexicon"]["errors"] == 1


def test_an_exception_that_cannot_travel_arrives_as_service_call_error() -> None:
    env = LocalEnvironment("error-untravelled")
    env.register_service("lexicon", Faulty)
    outcome = run_probe(env, lambda fn, _: fn.call_service("lexicon", method="locked"))
    error = outcome.raised
    assert type(error) is ServiceCallError
    assert error.service == "lexicon" and error.method == "locked"
    assert error.remote_type.endswith("test_service_errors.LockedError")
    assert error.remote_message == "cannot pickle me"
    assert "in locked" in error.remote_traceback and 'raise LockedError("cannot pickle me")' in error.remote_traceback


def test_an_async_call_fails_its_future_with_the_service_exception() -> None:
    env = LocalEnvironment("error-async")
    env.register_service("lexicon", Faulty)
    outcome = run_probe(env, lambda fn, _: fn.call_service_async("lexicon", "emu").exception(timeout=JOB_TIMEOUT))
    assert type(outcome.value) is LexiconError


class Slow(BaseService):
    """`process` holds until the test releases it; `echo` answers at once."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        self.entered = entered
        self.release = release

    def process(self, value: Any) -> Any:
        self.entered.set()
        if not self.release.wait(JOB_TIMEOUT):
            raise AssertionError("never released")
        return ("late", value)

    def echo(self, value: Any) -> Any:
        return ("echo", value)


def test_a_timeout_names_service_method_and_timeout_and_its_late_answer_is_dropped_and_counted() -> None:
    entered, release = threading.Event(), threading.Event()
    env = LocalEnvironment("late")
    env.register_service("slow", Slow, entered, release)

    def late_then_next(fn: MapFunction, _: Any) -> dict[str, Any]:
        """A call that times out; its answer arrives during the next call, which must get its own."""
        caller = fn.ctx.service_caller
        try:
            fn.call_service("slow", "first", timeout=0.2)
            timeout_error = None
        except TimeoutError as exc:
            timeout_error = str(exc)
        assert entered.is_set()
        late_before = caller.late_responses
        release.set()  # the service now answers "first", after its caller gave up
        second = fn.call_service("slow", "second", method="echo", timeout=JOB_TIMEOUT)
        return {"timeout": timeout_error, "second": second, "late": (late_before, caller.late_responses)}

    outcome = run_probe(env, late_then_next)
    assert outcome.raised is None
    result = outcome.value
    assert result["timeout"] == "service 'slow' method 'process' gave no answer within 0.2 s"
    # The service answers in order ("first" before "second"): the next call reads the late
    # answer first, drops it, counts it, and still gets its own.
    assert result["second"] == ("echo", "second")
    assert result["late"] == (0, 1)


def test_an_async_call_times_out_without_anyone_waiting() -> None:
    entered, release = threading.Event(), threading.Event()
    env = LocalEnvironment("late-async")
    env.register_service("slow", Slow, entered, release)

    def body(fn: MapFunction, _: Any) -> Any:
        future: Future = fn.call_service_async("slow", "x", timeout=0.2)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())  # resolved by the listener, not by a waiter
        finished = done.wait(JOB_TIMEOUT)
        release.set()
        return finished, future.exception()

    outcome = run_probe(env, body)
    finished, error = outcome.value
    assert finished
    assert type(error) is TimeoutError and "'slow' method 'process'" in str(error)


def test_a_call_whose_request_queue_stays_full_times_out_saying_so() -> None:
    entered, release = threading.Event(), threading.Event()
    env = LocalEnvironment("full-queue", config={"service_queue_maxsize": 1})
    env.register_service("slow", Slow, entered, release)

    def body(fn: MapFunction, _: Any) -> Any:
        held = fn.call_service_async("slow", "held")
        assert entered.wait(JOB_TIMEOUT)  # the worker is busy with "held"
        queued = fn.call_service_async("slow", "queued", method="echo")  # fills the one slot
        try:
            fn.call_service("slow", "refused", method="echo", timeout=0.2)
            error = None
        except TimeoutError as exc:
            error = str(exc)
        release.set()
        return error, held.result(JOB_TIMEOUT), queued.result(JOB_TIMEOUT)

    outcome = run_probe(env, body)
    assert outcome.value == ("service 'slow' method 'echo': request queue stayed full", ("late", "held"),
                             ("echo", "queued"))
