"""Regressions: a lost get reply, a held stream state, items that will not pickle, a failed blocked put."""

from __future__ import annotations

import contextlib
import threading

import pytest

from sage.kernel.runtime.communication.rpc import RPCQueueServer
from sage.kernel.runtime.communication.rpc import server as server_module
from sage.kernel.runtime.communication.rpc.client import RPCQueueClient
from sage.kernel.runtime.communication.rpc.producer import RPCQueueError

from .support import TcpCutter, wait_until

LONG = 30.0  # a bound for what must happen, not a pace: generous for a loaded 2-core machine


def test_a_get_whose_reply_was_lost_does_not_let_the_next_get_confirm_its_items(server, authkey):
    hosted = server.attach_queue("q", 100)
    hosted.put_many([1, 2, 3])
    cutter = TcpCutter(server.port)
    client = RPCQueueClient("127.0.0.1", cutter.port, "q", 100, authkey.encode(), 1.2)
    try:
        assert client.qsize() == 3  # connected both ways before replies start to vanish
        cutter.drop_to_client.set()
        with pytest.raises(ConnectionError):
            client.get_many(10, timeout=0.1)  # the server took the items; the reply never came
        assert hosted.qsize() == 0
        cutter.drop_to_client.clear()
        # The next get must not confirm the lost reply: its items come back at the end of their lease.
        assert client.get_many(10, timeout=LONG) == [1, 2, 3]
        assert server.counters["returned"] == 3
    finally:
        client.close()
        cutter.close()


def test_a_stream_state_sent_with_a_reply_is_no_longer_held(authkey, monkeypatch):
    # Hold states until a reply takes them (in real life a get comes within HOLD_MS, or not).
    monkeypatch.setattr(server_module, "HOLD_MS", 60_000)
    with RPCQueueServer(authkey=authkey) as server:
        server.create_queue("q", 100)
        client = RPCQueueClient("127.0.0.1", server.port, "q", 100, authkey.encode(), 5.0)
        try:
            client.put(1)
            client.flush(LONG)
            assert client.get(timeout=LONG) == 1  # names the stream: this process gets too
            client.put(2)
            wait_until(lambda: bool(server._held), LONG)  # its state waits for a reply to go with
            assert client.get(timeout=LONG) == 2  # ... which carries it
            client.flush(LONG)
            # Nothing left to tell: the server must not keep polling every HOLD_MS.
            wait_until(lambda: not server._held, 5.0)
        finally:
            client.close()


def test_items_after_one_that_will_not_pickle_stay_queued_and_those_before_it_are_sent(server, authkey):
    hosted = server.attach_queue("q", 100)
    lock = threading.Lock()
    hosted.put_many([1, lock, 3])
    client = RPCQueueClient("127.0.0.1", server.port, "q", 100, authkey.encode(), 5.0)
    try:
        assert client.get_many(10, timeout=LONG) == [1]
        with pytest.raises(RPCQueueError, match="cannot pickle"):
            client.get_many(10, timeout=LONG)  # the bad item first: reported, and left queued
        assert hosted.get_many(10, timeout=0) == [lock, 3]  # nothing lost: a local consumer takes them
    finally:
        client.close()


def test_a_blocked_put_that_fails_leaves_no_negative_backlog(authkey):
    server = RPCQueueServer(authkey=authkey).start()
    server.create_queue("q", 4)
    client = RPCQueueClient("127.0.0.1", server.port, "q", 4, authkey.encode(), 2.0)
    producer = client._producer
    failures: list[BaseException] = []

    def blocked_put() -> None:
        try:
            client.put_many(list(range(10, 20)), timeout=None)
        except BaseException as exc:
            failures.append(exc)

    try:
        client.put_many([0, 1, 2, 3])
        client.flush(LONG)
        putter = threading.Thread(target=blocked_put)
        putter.start()
        wait_until(lambda: producer._backlog > 0, LONG)  # waiting for credit that never comes
        server.stop()  # ends the stream under the waiting caller
        putter.join(LONG)
        assert not putter.is_alive()
        assert isinstance(failures[0], ConnectionError)
        assert producer._backlog == 0
    finally:
        server.stop()
        with contextlib.suppress(ConnectionError, RPCQueueError):
            client.close()

