"""RequestSender: requests put from a thread of their own, in order per service, a full queue holding up only
its own service, failed when they cannot be put in time, dropped when their caller no longer waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

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


def request(number: int, service: str = "svc") -> ServiceRequest:
    return ServiceRequest(f"r{number}", service, "process", (number,), {}, time.time() + WAIT,
                          PythonQueueDescriptor(maxsize=10), "caller")


def sender_of(queues: dict[str, PythonQueueDescriptor], failures: Failures, cancel: threading.Event | None = None,
              wanted: Callable[[ServiceRequest], bool] = lambda request: True,
              sent: list[str] | None = None) -> RequestSender:
    def note_sent(request: ServiceRequest) -> None:
        if sent is not None:
            sent.append(request.request_id)

    return RequestSender("test", queues, cancel or threading.Event(), wanted, note_sent, failures)


def full_queue() -> PythonQueueDescriptor:
    qd = PythonQueueDescriptor(maxsize=2)
    qd.put_many(["a", "b"])
    return qd


def test_requests_wait_for_room_and_arrive_in_the_order_handed_over() -> None:
    qd = full_queue()
    failures = Failures()
    sent: list[str] = []
    sender = sender_of({"svc": qd}, failures, sent=sent)
    try:
        for number in range(5):
            sender.send(request(number), time.monotonic() + WAIT)
        assert sender.unsent("svc") == 5  # send never waits for room
        taken = [qd.get(timeout=WAIT) for _ in range(7)]
    finally:
        sender.close()
    assert taken[:2] == ["a", "b"] and [r.request_id for r in taken[2:]] == [f"r{n}" for n in range(5)]
    assert failures.failed == [] and sorted(sent) == [f"r{n}" for n in range(5)]


def test_a_request_that_finds_no_room_by_its_deadline_fails_and_the_next_one_still_waits() -> None:
    qd = full_queue()
    failures = Failures()
    sender = sender_of({"svc": qd}, failures)
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
    assert sender.unsent("svc") == 0 and len(failures.failed) == 1


def test_cancellation_fails_the_requests_still_waiting() -> None:
    cancel = threading.Event()
    failures = Failures()
    sender = sender_of({"svc": full_queue()}, failures, cancel)
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
    sender = sender_of({"svc": Broken(maxsize=2)}, failures)
    try:
        sender.send(request(0), time.monotonic() + WAIT)
        [(_, error)] = failures.wait_for(1)
    finally:
        sender.close()
    assert isinstance(error, ConnectionError) and isinstance(error.__cause__, OSError)


def test_a_full_queue_holds_up_only_the_requests_for_its_own_service() -> None:
    failures = Failures()
    idle = PythonQueueDescriptor(maxsize=10)
    sender = sender_of({"busy": full_queue(), "idle": idle}, failures)
    try:
        sender.send(request(0, "busy"), time.monotonic() + WAIT)
        sender.send(request(1, "idle"), time.monotonic() + WAIT)
        assert idle.get(timeout=WAIT).request_id == "r1"  # long before r0's deadline
        assert sender.unsent("busy") == 1
    finally:
        sender.close()
    assert failures.failed == []


def test_a_request_whose_caller_no_longer_waits_is_dropped_unsent() -> None:
    qd = full_queue()
    failures = Failures()
    given_up = {"r0"}
    sender = sender_of({"svc": qd}, failures, wanted=lambda request: request.request_id not in given_up)
    try:
        sender.send(request(0), time.monotonic() + WAIT)
        sender.send(request(1), time.monotonic() + WAIT)
        assert [qd.get(timeout=WAIT) for _ in range(3)][2].request_id == "r1"
    finally:
        sender.close()
    assert qd.empty() and failures.failed == []


def test_sending_after_close_raises_send_cancelled() -> None:
    sender = sender_of({"svc": full_queue()}, Failures())
    sender.close()
    with pytest.raises(SendCancelled):
        sender.send(request(0), time.monotonic() + WAIT)


def test_a_request_behind_a_late_one_keeps_its_own_deadline() -> None:
    qd = PythonQueueDescriptor(maxsize=2)
    qd.put("waiting")  # one free slot
    failures = Failures()
    sent: list[str] = []
    sender = sender_of({"svc": qd}, failures, sent=sent)
    try:
        sender.send(request(0), time.monotonic() - 1.0)  # its deadline passed while it waited to be put
        sender.send(request(1), time.monotonic() + WAIT)
        assert qd.get(timeout=WAIT) == "waiting"  # room for the second only now
        assert [qd.get(timeout=WAIT).request_id for _ in range(2)] == ["r0", "r1"]
    finally:
        sender.close()
    assert failures.failed == [] and sent == ["r0", "r1"]
