"""Timeouts, retries with exact counts, fail or skip after the retries, and a rate limit, against a real server
that fails or stalls on chosen requests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sage.kernel import JobFailedError, LocalEnvironment

from .support import ModelServer, NotFound, ServerError, http_get

TIMEOUT = 1.0
"""Seconds an attempt may take: the echo answers at once (well within this, even on a loaded machine), a
stalled request never (until released)."""


def fetch_from(port: int) -> Any:
    async def fetch(x: int) -> str:
        return await http_get(port, f"/echo?x={x}")
    return fetch


def test_failed_and_stalled_attempts_are_retried_exactly_as_often_as_needed() -> None:
    with ModelServer() as server:
        server.fail_first = {"3": 2, "7": 3}      # 500 twice, three times: then they answer
        server.stall_first = {"5": 1}             # the first attempt never answers: it times out
        env = LocalEnvironment("retries")
        results = (env.from_batch(range(10))
                   .map_async(fetch_from(server.port), timeout=TIMEOUT, retries=3, backoff=0.01).collect())
        job = env.submit(autostop=True)
        hits = Counter(server.hits)
    assert list(results) == [str(x) for x in range(10)]
    assert hits == Counter({**{str(x): 1 for x in range(10)}, "3": 3, "7": 4, "5": 2})
    calls = job.metrics()["fetch_0"]["async"]
    assert (calls["retried"], calls["timed_out"], calls["completed"], calls["failed"]) == (6, 1, 10, 0)


def test_after_its_retries_a_failing_call_is_skipped_and_counted() -> None:
    with ModelServer() as server:
        server.fail_first = {"4": 99}      # never answers well
        server.missing = {"6"}             # a 404: NotFound is not in retry_on, so no retry
        server.stall_first = {"8": 99}     # never answers: every attempt times out
        env = LocalEnvironment("skip")
        results = (env.from_batch(range(10))
                   .map_async(fetch_from(server.port), timeout=TIMEOUT, retries=1, backoff=0.01, on_error="skip")
                   .collect())
        job = env.submit(autostop=True)
        hits = Counter(server.hits)
    assert list(results) == [str(x) for x in range(10) if x not in (4, 6, 8)]
    assert (hits["4"], hits["6"], hits["8"]) == (2, 1, 2)
    metrics = job.metrics()["fetch_0"]
    assert metrics["errors"] == 3
    assert {k: metrics["async"][k] for k in ("retried", "timed_out", "failed")} == {
        "retried": 2, "timed_out": 2, "failed": 3}


@pytest.mark.parametrize(("broken", "cause"), [({"fail_first": {"4": 99}}, ServerError),
                                                ({"stall_first": {"4": 99}}, TimeoutError)])
def test_after_its_retries_a_failing_call_fails_the_job_with_the_last_error(broken: dict[str, Any],
                                                                            cause: type) -> None:
    with ModelServer() as server:
        for setting, value in broken.items():
            setattr(server, setting, value)
        env = LocalEnvironment("fail")
        env.from_batch(range(10)).map_async(fetch_from(server.port), timeout=TIMEOUT, retries=1,
                                            backoff=0.01).sink(lambda x: None)
        with pytest.raises(JobFailedError) as failure:
            env.submit(autostop=True)
        hits = server.hits["4"]
    assert failure.value.task_name == "fetch_0"
    assert isinstance(failure.value.__cause__, cause)
    assert hits == 2
    if cause is TimeoutError:
        assert "attempt 2 of 2" in str(failure.value.__cause__)


def test_retry_on_names_what_is_retried() -> None:
    with ModelServer() as server:
        server.missing = {"2"}
        env = LocalEnvironment("retry-on")
        results = (env.from_batch(range(4))
                   .map_async(fetch_from(server.port), retries=2, backoff=0.0, retry_on=NotFound, on_error="skip")
                   .collect())
        env.submit(autostop=True)
        hits = server.hits["2"]
    assert list(results) == ["0", "1", "3"] and hits == 3


RATE = 20.0
CALLS = 61


def test_a_rate_limit_is_never_exceeded() -> None:
    with ModelServer() as server:
        env = LocalEnvironment("rate")
        results = env.from_batch(range(CALLS)).map_async(fetch_from(server.port), capacity=8,
                                                         rate_limit=RATE).collect()
        job = env.submit(autostop=True)
        arrivals = sorted(server.arrivals)
    assert list(results) == [str(x) for x in range(CALLS)]
    # A limit is an upper bound: over the whole run the server saw at most RATE calls a second (+10% for how
    # late the first request may arrive); on a loaded machine it may be slower, but not absurdly so.
    observed = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert RATE * 0.5 <= observed <= RATE * 1.1, observed
    calls = job.metrics()["fetch_0"]["async"]
    assert calls["rate_limited_waits"] >= CALLS - 8  # after the first, the calls waited for their turn
