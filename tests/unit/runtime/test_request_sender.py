"""RequestSender: requests put from a thread of their own, in order, failed when they cannot be put in time."""

from __future__ import annotations

import threading
import time

from sage.kernel.runtime.communication.errors import SendCancelled
from sage.kernel.runtime.communication.queue_descriptor import PythonQueueDescriptor
from sage.kernel.runtime.service.protocol import ServiceRequest
from sage.kernel.runtime.service.request_sender import RequestSender

WAIT = 30.0
"""Seconds a test waits for something that happens at once when all is well."""


class Failures:
    """The `fail` callback: what failed, with a way to wait for a number of failures."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, BaseException]] = []
        self._changed = threading.Condition()

    def __call__(self, request: ServiceRequest, error: BaseException) -> None:
        with self._changed:
            self.failed.append((request.request_id, error))
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, BaseException]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.failed) >= count, WAIT), self.failed
            return list(self.failed)


def request(number: int) -> ServiceRequest:
    return ServiceRequest(f"r{number}", "svc", "process", (number,), {}, time.time() + WAIT,
                          PythonQueueDescriptor(maxsize=10), "caller")


def full_queue() -> PythonQueueDescriptor:
    qd = PythonQueueDescriptor(maxsize=2)
    qd.put_many(["a", "b"])
    return qd


def test_requests_wait_for_room_and_arrive_in_the_order_handed_over() -> None:
    qd = full_queue()
    failures = Failures()
    sender = RequestSender("test", {"svc": qd}, threading.Event(), failures)
    try:
        for number in range(5):
            sender.send(request(number), time.monotonic() + WAIT)
        assert sender.unsent == 5  # send never waits for room
        taken = [qd.get(timeout=WAIT) for _ in range(7)]
    finally:
        sender.close()
    assert taken[:2] == ["a", "b"] and [r.request_id for r in taken[2:]] == [f"r{n}" for n in range(5)]
    assert failures.failed == []


def test_a_request_that_finds_no_room_by_its_deadline_fails_and_the_next_one_still_waits() -> None:
    qd = full_queue()
    failures = Failures()
    sender = RequestSender("test", {"svc": qd}, threading.Event(), failures)
    try:
        sender.send(request(0), time.monotonic() + 0.2)
        sender.send(request(1), time.monotonic() + WAIT)
        [(request_id, error)] = failures.wait_for(1)
        assert request_id == "r0" and isinstance(error, TimeoutError)
        assert "request queue stayed full" in str(error)
        qd.get(timeout=WAIT)  # room: the next request goes in
        assert [qd.get(timeout=WAIT) for _ in range(2)][1].request_id == "r1"
    finally:
        sender.close()
    assert sender.unsent == 0 and len(failures.failed) == 1


def test_cancellation_fails_the_requests_still_waiting() -> None:
    cancel = threading.Event()
    failures = Failures()
    sender = RequestSender("test", {"svc": full_queue()}, cancel, failures)
    try:
        sender.send(request(0), time.monotonic() + WAIT)
        sender.send(request(1), time.monotonic() + WAIT)
        cancel.set()
        failed = failures.wait_for(2)
    finally:
        sender.close()
    assert [request_id for request_id, _ in failed] == ["r0", "r1"]
    assert all(isinstance(error, SendCancelled) for _, error in failed)
    assert failed[0][1] is not failed[1][1]  # each call its own exception


class Broken(PythonQueueDescriptor):
    def put_many(self, items: list[object], timeout: float | None = None) -> None:
        raise OSError("the transport is gone")


def test_a_failing_transport_fails_the_requests_with_a_connection_error() -> None:
    failures = Failures()
    sender = RequestSender("test", {"svc": Broken(maxsize=2)}, threading.Event(), failures)
    try:
        sender.send(request(0), time.monotonic() + WAIT)
        [(_, error)] = failures.wait_for(1)
    finally:
        sender.close()
    assert isinstance(error, ConnectionError) and isinstance(error.__cause__, OSError)
