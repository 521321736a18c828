"""Credit-based puts: flow within credit, block at none, exact accepted counts, flush, no duplicates on re-send."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from sage.kernel.runtime.communication.queue_descriptor import BatchFull, RPCQueueDescriptor
from sage.kernel.runtime.communication.router import Batch, FeedbackBatch
from sage.kernel.runtime.communication.rpc import RPCQueueServer
from sage.kernel.runtime.loop import LoopToken

from .support import Records, TcpCutter, over_tcp, put_flush_and_hold, wait_until


def test_puts_return_within_credit_and_flush_confirms_them(server):
    local = server.create_queue("q", 100)
    remote = over_tcp(local)
    for n in range(50):
        remote.put(n)
    remote.flush()
    assert local.qsize() == 50 and remote.queue_instance._producer.pending == 0
    assert local.get_many(100) == list(range(50))
    remote.close()


def test_close_flushes_what_was_put(server):
    local = server.create_queue("q", 100)
    remote = over_tcp(local)
    remote.put_many(list(range(10)))
    remote.put("last")
    remote.close()
    assert local.get_many(100) == [*range(10), "last"]


def test_credit_counts_the_records_of_weighted_items(server):
    local = server.create_queue("q", 10)
    remote = over_tcp(local)
    with pytest.raises(BatchFull) as full:
        remote.put_many([Records("a", 4), Records("b", 4), Records("c", 4)], timeout=0)
    assert full.value.accepted == 2  # 8 records; the third item does not fit in the 2 left
    remote.flush()
    assert local.qsize() == 8
    assert local.get_many(10) == [Records("a", 4), Records("b", 4)]
    remote.put(Records("huge", 25), timeout=30)  # heavier than the queue: goes in alone, into an empty queue
    remote.flush()
    assert local.qsize() == 25
    with pytest.raises(queue.Full):
        remote.put("one more", timeout=0)
    assert local.get_many(10) == [Records("huge", 25)]
    remote.close()


def test_an_idle_producer_gives_back_the_credit_another_producer_waits_for(server):
    local = server.create_queue("q", 10)
    idle = over_tcp(local)
    idle.put("idle")
    idle.flush()  # it asked for more credit than it used, and keeps it while nobody else needs it
    busy = over_tcp(local)
    busy.put_many(list(range(9)), timeout=60)
    busy.flush()
    assert local.get_many(10) == ["idle", *range(9)]
    assert server.counters["recalls"] >= 1
    idle.close()
    busy.close()


def test_the_credit_of_a_killed_producer_is_taken_back(server, spawn):
    local = server.create_queue("q", 10)
    flushed = spawn.Event()
    holder = RPCQueueDescriptor("127.0.0.1", server.port, "q", 10, timeout=2.0)
    proc = spawn.process(put_flush_and_hold, holder, ["held"], flushed)
    assert flushed.wait(30)
    proc.kill()  # dies holding unused credit
    proc.join(10)
    busy = over_tcp(local)
    busy.put_many(list(range(9)), timeout=60)
    busy.flush()
    assert local.get_many(10) == ["held", *range(9)]
    assert server.counters["revoked"] >= 1
    busy.close()


def test_producers_sharing_a_tiny_queue_keep_their_order_and_lose_nothing(server):
    local = server.create_queue("q", 4)
    producers = [over_tcp(local) for _ in range(3)]

    def produce(k: int) -> None:
        for n in range(300):
            producers[k].put((k, n))
        producers[k].flush()

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    got: list[tuple[int, int]] = []
    while len(got) < 900:
        got.extend(local.get_many(3, timeout=30))
    for thread in threads:
        thread.join(30)
    assert [[n for k, n in got if k == producer] for producer in range(3)] == [list(range(300))] * 3
    assert local.empty()
    for producer in producers:
        producer.close()


def test_messages_sent_again_after_a_lost_connection_are_queued_once(server):
    local = server.create_queue("q", 10_000)
    cutter = TcpCutter(server.port)
    producer = RPCQueueDescriptor("127.0.0.1", cutter.port, "q", 10_000, timeout=6.0)  # re-sends every 1 s
    try:
        for n in range(100):
            producer.put(n)
        producer.flush(30)

        cutter.drop_to_server.set()  # data lost on the way: sent again on the next connection
        for n in range(100, 200):
            producer.put(n)
        wait_until(lambda: cutter.dropped["to_server"] > 0)
        cutter.cut()
        producer.flush(30)
        assert local.qsize() == 200

        cutter.drop_to_client.set()  # data queued, acknowledgements lost: sent again, queued once
        producer.put_many(list(range(200, 300)))
        wait_until(lambda: local.qsize() == 300 and cutter.dropped["to_client"] > 0)
        cutter.cut()
        producer.flush(30)
        assert server.counters["duplicates"] >= 100
        assert local.get_many(1000) == list(range(300)) and local.empty()
        assert cutter.connections >= 3
    finally:
        producer.close()
        cutter.close()


def test_producers_of_items_heavier_than_half_the_queue_both_get_through(server):
    local = server.create_queue("q", 10)
    producers = [over_tcp(local) for _ in range(2)]

    def produce(k: int) -> None:
        for n in range(8):
            producers[k].put(Records(f"{k}-{n}", 7), timeout=60)
        producers[k].flush(60)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    got: list = []
    while len(got) < 16:
        got.extend(local.get_many(1, timeout=60))
    for thread in threads:
        thread.join(60)
    assert [[r.name for r in got if r.name.startswith(f"{k}-")] for k in range(2)] == [
        [f"{k}-{n}" for n in range(8)] for k in range(2)
    ]
    for producer in producers:
        producer.close()


def test_overflow_items_need_no_credit_even_on_a_fresh_stream_to_a_full_queue(server):
    local = server.create_queue("loop-head", 1)
    local.put(Batch(["waiting"]))
    remote = over_tcp(local)  # a new stream: its first message must open it before any data
    with pytest.raises(queue.Full):
        remote.put(Batch(["forward"]), timeout=0)
    remote.put_many([FeedbackBatch(["fed", "back"]), LoopToken(0, 1)], timeout=0)
    remote.flush()
    assert local.qsize() == 1 + 2 + 1  # they count toward what the queue holds
    assert [item.payloads for item in local.get_many(2)] == [["waiting"], ["fed", "back"]]
    remote.close()


def test_a_stream_the_server_forgot_while_it_was_quiet_opens_again_before_its_overflow_items(authkey):
    # A server keeps at most `max_clients` streams; beyond that it forgets one silent for two leases that
    # holds no credit and wants none. A loop's feedback stream may be such a one (its items need no
    # credit): its next data must not find the stream gone (refused as from a stream the server never
    # knew, which fails the job).
    with RPCQueueServer(authkey=authkey, max_clients=1) as server:
        local = server.create_queue("loop-head", 10)
        quiet = over_tcp(local, timeout=0.3)
        quiet.put_many([FeedbackBatch(["first"])], timeout=0)
        quiet.flush()
        other = over_tcp(local, timeout=0.3)
        other.put_many(list(range(9)), timeout=30)  # the quiet stream is asked for its credit, and gives it back
        other.flush()
        time.sleep(0.7)  # what is tested is a lapse of time: past two of the quiet stream's leases
        third = over_tcp(local, timeout=0.3)
        third.put_many([FeedbackBatch(["third"])], timeout=0)
        third.flush()
        assert server.counters["evicted_clients"] == 1
        quiet.put_many([FeedbackBatch(["second"])], timeout=0)
        quiet.flush()
        taken = [getattr(item, "payloads", item) for item in local.get_many(12)]
        assert taken == [["first"], *range(9), ["third"], ["second"]]
        for producer in (quiet, other, third):
            producer.close()
