"""Real processes on 127.0.0.1: the same queue id reaches the same queue from every process."""

from __future__ import annotations

import multiprocessing

from sage.kernel.runtime.communication.router import Packet

from .support import get_and_report, produce, put_then_signal, wait_until


def test_put_in_one_process_get_in_another(server, spawn):
    descriptor = server.create_queue("q", 50)
    items = [Packet(n, partition_key=f"k{n}", partition_strategy="hash") for n in range(30)]
    done, results = spawn.Event(), spawn.Queue()
    spawn.process(get_and_report, descriptor, 30, results)  # pickled: no key, it reads SAGE_KERNEL_AUTHKEY
    spawn.process(put_then_signal, descriptor, items, done)
    assert done.wait(30)
    assert results.get(timeout=30) == items
    assert server.counters["rejected_auth"] == 0


def test_100k_packets_from_three_producers_no_loss_in_order(server, spawn):
    descriptor = server.create_queue("many", 2048)  # the consumer hosts its queue
    counts = [40_000, 30_000, 30_000]
    for producer, count in enumerate(counts):
        spawn.process(produce, descriptor, producer, count, 256)
    seen = [[] for _ in counts]
    received = 0
    while received < sum(counts):
        for packet in descriptor.get_many(1024, timeout=30):
            producer, n = packet.payload
            seen[producer].append(n)
            received += 1
    assert [s == list(range(c)) for s, c in zip(seen, counts, strict=True)] == [True, True, True]
    assert descriptor.empty()


def test_a_full_queue_blocks_a_producer_process_until_drained(server, spawn):
    descriptor = server.create_queue("small", 5)
    done = spawn.Event()
    spawn.process(put_then_signal, descriptor, list(range(20)), done)
    wait_until(descriptor.full)
    assert not done.wait(0.5)  # blocked: the queue is full and stays full
    assert descriptor.qsize() == 5 and server.counters["parked"] == 1
    got = []
    while len(got) < 20:
        got.extend(descriptor.get_many(4, timeout=10))
    assert done.wait(10)
    assert got == list(range(20))


def test_a_forked_child_reaches_the_queue_over_the_network_not_its_copy(server):
    descriptor = server.create_queue("forked", 10)
    descriptor.put("parent")
    assert descriptor.is_local  # attached: the child inherits the attached object
    child = multiprocessing.get_context("fork").Process(target=lambda: (descriptor.put("child"), descriptor.flush()))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert descriptor.get_many(10, timeout=5) == ["parent", "child"]
    assert server.counters["streams"] == 1 and server.counters["clients"] == 0
