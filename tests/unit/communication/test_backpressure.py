"""Backpressure: full queues block the sender, nothing is lost or reordered, stop signals come last,
and a cancel event frees a blocked sender promptly without duplicating anything."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sage.kernel.runtime.communication import BaseRouter, Connection, Packet, SendCancelled, StopSignal
from sage.kernel.runtime.communication.router.router import RETRY_INTERVAL

from .support import drain, records, wait_until_parked

N = 3000


def consume_until_stops(descriptor, stops: int, out: list[Any]) -> None:
    """A slow consumer: one item per get, until `stops` stop signals arrived."""
    seen = 0
    while seen < stops:
        item = descriptor.get(timeout=10)
        out.append(item)
        seen += isinstance(item, StopSignal)


def run_threads(*threads: threading.Thread) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a producer or consumer hung"


@pytest.mark.parametrize("maxsize", [2, 3, 4])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_one_producer_into_small_queues_loses_nothing_and_stops_last(make_groups, maxsize, batch_size):
    groups = make_groups({0: 3}, maxsize=maxsize)
    router = BaseRouter(groups, batch_size=batch_size)
    received: dict[int, list[Any]] = {p: [] for p in groups[0]}

    def produce() -> None:
        for i in range(N):
            router.send(Packet(i))
        router.send_stop_signal(StopSignal(source="src_0"))

    consumers = [
        threading.Thread(target=consume_until_stops, args=(c.queue_descriptor, 1, received[p]))
        for p, c in groups[0].items()
    ]
    run_threads(threading.Thread(target=produce), *consumers)

    for p, items in received.items():
        *packets, stop = records(items)
        assert isinstance(stop, StopSignal) and stop.source == "src_0"
        assert [pk.payload for pk in packets] == list(range(p, N, 3))  # all of this channel, in order
        assert groups[0][p].queue_descriptor.empty()  # nothing after the stop signal
    assert router.backpressure_seconds > 0  # the queues really were full


def test_two_producers_into_one_small_queue_keep_order_per_channel(make_queue):
    shared = make_queue(maxsize=2)
    received: list[Any] = []

    def produce(name: str) -> None:
        router = BaseRouter({0: {0: Connection(0, 0, "sink_0", shared)}}, batch_size=5)
        for i in range(N):
            router.send(Packet((name, i)))
        router.send_stop_signal(StopSignal(source=name))

    run_threads(
        threading.Thread(target=produce, args=("a",)),
        threading.Thread(target=produce, args=("b",)),
        threading.Thread(target=consume_until_stops, args=(shared, 2, received)),
    )
    received = records(received)
    for name in ("a", "b"):
        channel = [item for item in received
                   if (item.source if isinstance(item, StopSignal) else item.payload[0]) == name]
        assert [pk.payload[1] for pk in channel[:-1]] == list(range(N))
        assert isinstance(channel[-1], StopSignal)
    assert isinstance(received[-1], StopSignal) and shared.empty()


def test_a_stop_signal_waits_for_room_on_a_full_queue(make_queue):
    descriptor = make_queue(maxsize=1)
    descriptor.put("filler")
    router = BaseRouter({0: {0: Connection(0, 0, "t", descriptor)}})
    sender = threading.Thread(target=router.send_stop_signal, args=(StopSignal(source="s"),))
    sender.start()
    wait_until_parked(descriptor.queue_instance.not_full)
    assert descriptor.get(timeout=1) == "filler"
    sender.join(timeout=5)
    assert not sender.is_alive()
    assert descriptor.get(timeout=1).source == "s"


def cancel_while_blocked(descriptor, router: BaseRouter, action) -> tuple[SendCancelled, float]:
    """Run `action` in a thread until it blocks on `descriptor`'s full queue, then set the
    router's cancel event. Returns the SendCancelled raised and seconds from cancel to raise."""
    outcome: list[tuple[SendCancelled, float]] = []

    def run() -> None:
        try:
            action()
        except SendCancelled as exc:
            outcome.append((exc, time.monotonic()))

    sender = threading.Thread(target=run)
    sender.start()
    wait_until_parked(descriptor.queue_instance.not_full)
    cancelled_at = time.monotonic()
    router.cancel_event.set()
    sender.join(timeout=5)
    assert not sender.is_alive(), "the cancelled sender is still blocked"
    assert len(outcome) == 1, "no SendCancelled"
    error, raised_at = outcome[0]
    return error, raised_at - cancelled_at


def test_cancel_frees_a_sender_blocked_on_a_full_queue_promptly(make_queue):
    descriptor = make_queue(maxsize=2)
    router = BaseRouter({0: {0: Connection(0, 0, "slow_0", descriptor)}}, batch_size=1)

    def produce() -> None:
        for i in range(3):  # blocks on the third packet
            router.send(Packet(i))

    error, delay = cancel_while_blocked(descriptor, router, produce)
    assert "slow_0" in str(error)
    assert delay < RETRY_INTERVAL + 0.5
    assert [pk.payload for pk in drain(descriptor)] == [0, 1]


def test_cancel_also_frees_a_blocked_stop_signal(make_queue):
    descriptor = make_queue(maxsize=1)
    descriptor.put("filler")
    router = BaseRouter({0: {0: Connection(0, 0, "t", descriptor)}})
    cancel_while_blocked(descriptor, router, lambda: router.send_stop_signal(StopSignal()))
    assert drain(descriptor) == ["filler"]


def test_after_a_cancelled_batch_a_flush_sends_only_what_was_not_delivered(make_queue):
    descriptor = make_queue(maxsize=3)
    router = BaseRouter({0: {0: Connection(0, 0, "t", descriptor)}}, batch_size=5)  # batches of 3: the queue's size
    # [0, 1, 2] fills the queue, [3, 4, 5] waits for room.
    cancel_while_blocked(descriptor, router, lambda: router.send_batch(list(range(6))))
    assert router.has_pending()
    assert [pk.payload for pk in drain(descriptor)] == [0, 1, 2]
    # Cancellation only interrupts waiting: with room, the flush goes through at once, in order,
    # and nothing delivered before is sent again.
    router.flush()
    assert [pk.payload for pk in drain(descriptor)] == [3, 4, 5]
    assert not router.has_pending()
