"""queue.Queue semantics over TCP: blocking, timeouts, partial batches, parking without spinning, threads."""

from __future__ import annotations

import contextlib
import queue
import threading
import time

import pytest

from sage.kernel.runtime.communication.queue_descriptor import BatchFull
from sage.kernel.runtime.communication.rpc import RPCQueueError

from .support import over_tcp, wait_until


@pytest.fixture
def pair(server):
    """(local, remote) descriptors of one queue of maxsize 4: the hosting process's and a TCP client's."""
    local = server.create_queue("q", 4)
    remote = over_tcp(local, timeout=5.0)
    assert local.is_local and not remote.is_local
    yield local, remote
    remote.close()


def test_put_get_nowait_and_sizes(pair):
    _, remote = pair
    assert remote.empty() and not remote.full()
    remote.put("a")
    remote.put_nowait("b")
    remote.put_many(["c", "d"])
    remote.flush()
    assert remote.qsize() == 4 and remote.full()
    with pytest.raises(queue.Full) as full:
        remote.put_nowait("e")
    assert not isinstance(full.value, BatchFull)
    assert remote.get() == "a" and remote.get_nowait() == "b"
    assert remote.get_many(10) == ["c", "d"]
    with pytest.raises(queue.Empty):
        remote.get_nowait()
    with pytest.raises(ValueError, match="max_items"):
        remote.get_many(0)
    with pytest.raises(ValueError, match="timeout"):
        remote.put("x", timeout=-1)


def test_put_many_reports_the_accepted_prefix(pair, server):
    local, remote = pair
    local.put("old")
    with pytest.raises(BatchFull) as full:
        remote.put_many([1, 2, 3, 4, 5], timeout=0)
    assert full.value.accepted == 3
    with pytest.raises(BatchFull) as full:
        remote.put_many([4, 5], timeout=0.1)
    assert full.value.accepted == 0
    remote.flush()
    assert local.get_many(10) == ["old", 1, 2, 3]
    # The router's pattern: retry the rest with a short timeout; nothing lost, nothing doubled.
    remote.put_many([4, 5], timeout=0.1)
    remote.flush()
    assert local.get_many(10) == [4, 5]
    assert server.counters["duplicates"] == 0


def test_blocked_remote_get_is_parked_not_polled_and_woken_by_a_local_put(pair, server):
    local, remote = pair
    began = time.monotonic()
    with pytest.raises(queue.Empty):
        remote.get(timeout=0.3)
    assert 0.25 <= time.monotonic() - began < 2.0
    assert server.counters["requests"] == 1  # one parked request, not a polling loop

    got = []
    getter = threading.Thread(target=lambda: got.append(remote.get_many(10, timeout=10)))
    getter.start()
    wait_until(lambda: server.counters["parked"] == 1)
    local.put_many(["wake", "up"])
    getter.join(5)
    assert got == [["wake", "up"]]


def test_blocked_remote_put_waits_for_room_and_resumes_where_it_stopped(pair, server):
    local, remote = pair
    done = threading.Event()
    putter = threading.Thread(target=lambda: (remote.put_many(list(range(10))), done.set()))
    putter.start()
    wait_until(lambda: local.qsize() == 4 and server.counters["parked"] == 1)
    assert not done.wait(0.3)  # 4 in, 6 waiting for credit
    got = []
    while len(got) < 10:
        got.extend(local.get_many(3, timeout=5))
    assert done.wait(5)
    putter.join()
    assert got == list(range(10))


def test_remote_producer_and_remote_consumer_meet_through_parking(pair):
    local, remote = pair
    consumer = over_tcp(local, timeout=5.0)
    got: list[int] = []

    def consume():
        while len(got) < 200:
            got.extend(consumer.get_many(7, timeout=5))

    thread = threading.Thread(target=consume)
    thread.start()
    for first in range(0, 200, 20):
        remote.put_many(list(range(first, first + 20)), timeout=5)
    thread.join(10)
    consumer.close()
    assert got == list(range(200))


def test_threads_share_one_remote_descriptor(pair):
    _, remote = pair
    results: list[list[int]] = [[] for _ in range(2)]

    def produce(k: int) -> None:
        for n in range(300):
            remote.put((k, n), timeout=10)

    def consume(slot: int) -> None:
        while sum(map(len, results)) < 1200:
            with contextlib.suppress(queue.Empty):
                results[slot].extend(remote.get_many(16, timeout=0.2))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=consume, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    everything = results[0] + results[1]
    assert sorted(everything) == sorted((k, n) for k in range(4) for n in range(300))
    for slot in results:  # each producer's items keep their order within every consumer
        for k in range(4):
            mine = [n for kk, n in slot if kk == k]
            assert mine == sorted(mine)


def test_unpicklable_batch_is_an_error_the_server_survives(pair, server):
    local, remote = pair
    remote.put(_Unloadable())  # accepted into the stream: the server finds out
    with pytest.raises(RPCQueueError, match="cannot unpickle"):
        remote.flush()
    assert server.counters["bad_payload"] == 1
    remote.put("still fine")  # later positions still line up
    remote.flush()
    assert local.get(timeout=5) == "still fine" and local.empty()


def test_an_item_that_cannot_be_pickled_is_reported_and_the_stream_goes_on(pair):
    local, remote = pair
    remote.put(threading.Lock())
    with pytest.raises(ValueError, match="cannot be pickled"):
        remote.flush()
    remote.put("next")
    remote.flush()
    assert local.get_many(10) == ["next"]


class _Unloadable:
    """Pickles fine, fails to unpickle on the server."""

    def __reduce__(self):
        return (_fail, ())


def _fail():
    raise RuntimeError("cannot rebuild")


def test_a_batch_over_the_message_limit_goes_in_pieces_with_exact_accounting(authkey, monkeypatch):
    from sage.kernel.runtime.communication.rpc import RPCQueueServer, producer

    monkeypatch.setattr(producer, "MAX_MESSAGE_BYTES", 4096)
    with RPCQueueServer(authkey=authkey, max_message_bytes=4096) as server:
        local = server.create_queue("q", 50)
        remote = over_tcp(local)
        items = [f"{n:04d}" + "x" * 200 for n in range(80)]  # about 17 KB pickled
        with pytest.raises(BatchFull) as full:
            remote.put_many(items, timeout=0)
        assert full.value.accepted == 50
        remote.flush()
        assert local.get_many(100) == items[:50]
        remote.put_many(items[50:], timeout=5)
        remote.flush()
        assert local.get_many(100) == items[50:]
        remote.put("y" * 5000)
        with pytest.raises(ValueError, match=r"over the .*-byte limit; dropped"):
            remote.flush()
        remote.put("z")
        remote.flush()
        assert local.get_many(100) == ["z"]
        assert server.counters["rejected_oversized"] == 0 and server.counters["messages"] > 3
        remote.close()
