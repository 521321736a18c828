"""Services on RayEnvironment: a service actor and a service pipeline, called from task actors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ray_job_support import finish

from sage.kernel import RayEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOW = 3.0
TIMEOUT = 0.3


class Refused(Exception):
    """Raised by the service, caught by the caller: a class of the test module, shipped by value to both."""


class Calc(BaseService):
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def process(self, x: int) -> int:
        return x + self.offset

    def scale(self, x: int, factor: int = 1) -> int:
        return x * factor

    def fail(self, key: str) -> None:
        raise KeyError(key)

    def refuse(self, why: str) -> None:
        raise Refused(why)

    def slow(self) -> str:
        time.sleep(SLOW)
        return "late"


def call(fn: MapFunction, case: str) -> Any:
    """What a caller does for one case; runs inside a task actor."""
    if case == "sync":
        return fn.call_service("calc", 1)
    if case == "method":
        return fn.call_service("calc", 3, method="scale", factor=4)
    if case == "async":
        futures = [fn.call_service_async("calc", i) for i in range(10)]
        return [future.result(timeout=30) for future in futures]
    if case == "error":
        return fn.call_service("calc", "missing", method="fail")
    if case == "own error":
        try:
            return fn.call_service("calc", "no stock", method="refuse")
        except Refused as exc:  # the caller's own class: the one the service raised, rebuilt here
            return f"caught {exc.args[0]}"
    if case == "timeout":
        return fn.call_service("calc", method="slow", timeout=TIMEOUT)
    if case == "pipeline":  # several requests in flight from each of two callers
        futures = [fn.call_service_async("double", i) for i in range(10)]
        return [future.result(timeout=30) for future in futures]
    raise AssertionError(case)


class Caller(MapFunction):
    """Runs one case per record; emits (case, result, exception or None, seconds, caller name)."""

    def execute(self, case: str) -> tuple[str, Any, BaseException | None, float, str]:
        started = time.monotonic()
        try:
            return case, call(self, case), None, time.monotonic() - started, self.name
        except Exception as exc:
            return case, None, exc, time.monotonic() - started, self.name


ALL_CASES = ["sync", "method", "async", "error", "own error", "timeout", "pipeline", "pipeline"]


# rpc carries every case, the service pipeline and two callers; Ray queues a small job (every
# queue there is an actor process, and each call four actor calls).
@pytest.mark.parametrize(("transport", "cases"), [("rpc", ALL_CASES), ("ray", ["sync", "async", "error", "own error"])])
def test_service_calls_from_task_actors(transport, cases):
    env = RayEnvironment(f"services-{transport}", config={"transport": transport})
    env.register_service("calc", Calc, 100, max_concurrency=2)
    if "pipeline" in cases:
        env.from_service("double", max_in_flight=4).map(lambda x: x * 2).reply()
    results = env.from_batch(cases).map(Caller, parallelism=2 if "pipeline" in cases else 1).collect()
    job = env.submit()
    assert finish(job) == "finished"
    out = list(results)
    assert sorted(case for case, *_ in out) == sorted(cases)

    for case, result, error, seconds, _ in out:
        if case == "sync":
            assert (result, error) == (101, None)
        elif case == "method":
            assert (result, error) == (12, None)
        elif case == "async":
            assert (result, error) == ([100 + i for i in range(10)], None)
        elif case == "error":
            assert type(error) is KeyError and error.args == ("missing",)
            assert "service 'calc' method 'fail'" in "".join(error.__notes__)
            # The service's own traceback: its frame, whether or not the actor can show the source line
            # (code shipped by value has none).
            notes = "".join(error.__notes__)
            assert ", in fail\n" in notes and "KeyError: 'missing'" in notes
        elif case == "own error":
            assert (result, error) == ("caught no stock", None)
        elif case == "timeout":
            assert type(error) is TimeoutError and "slow" in str(error)
            assert seconds < SLOW
        elif case == "pipeline":
            assert (result, error) == ([2 * i for i in range(10)], None)
    if cases.count("pipeline") == 2:  # the pipeline service answered two callers at once
        assert len({caller for case, *_, caller in out if case == "pipeline"}) == 2
