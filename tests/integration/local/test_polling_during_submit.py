"""A job can be polled (metrics, routing) from the moment a listener sees it, while its tasks still start."""

from __future__ import annotations

import threading

from sage.kernel import LocalEnvironment
from sage.kernel.runtime.job_manager import JobListener, job_manager
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT


def test_metrics_and_routing_can_be_read_while_tasks_are_being_registered() -> None:
    errors: list[BaseException] = []
    polls = [0]
    started = threading.Event()

    def poll(job) -> None:
        started.set()
        try:
            while not job.done():
                job.instance_metrics()
                job.routing_info()
                polls[0] += 1
        except BaseException as exc:  # what the live view would crash on
            errors.append(exc)

    class PollFromTheStart(JobListener):
        def submitted(self, job, graph) -> None:
            threading.Thread(target=poll, args=(job,), daemon=True).start()
            started.wait(JOB_TIMEOUT)  # the poller runs before the first task registers

    out: list[int] = []
    env = LocalEnvironment("polled-while-starting")
    env.from_batch(range(2000), parallelism=8).map(lambda x: x, parallelism=48).sink(TestingSink, out, parallelism=8)
    listener = PollFromTheStart()
    job_manager().add_listener(listener)
    try:
        job = env.submit()
    finally:
        job_manager().remove_listener(listener)
    assert job.wait(JOB_TIMEOUT) == "finished"
    assert errors == []
    assert polls[0] > 0 and sorted(out) == list(range(2000))
