"""An item leaves a queue only once its consumer has it: a consumer that dies mid-get loses nothing."""

from __future__ import annotations

import os

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import Op, Status, decode_reply, encode_request, loads_items

from .support import get_forever, over_tcp, raw_dealer, take_without_confirming, wait_until


def test_items_for_a_consumer_killed_while_its_get_is_parked_go_to_the_next_consumer(server, spawn):
    local = server.create_queue("q", 100)
    results = spawn.Queue()
    doomed = spawn.process(get_forever, RPCQueueDescriptor("127.0.0.1", server.port, "q", 100, timeout=2.0), results)
    wait_until(lambda: server.counters["parked"] == 1)
    doomed.kill()
    doomed.join(10)
    local.put_many(["a", "b", "c"])  # taken by the dead consumer's parked get, sent to nobody
    # Back at once when ZeroMQ knows the peer is gone, else when the unconfirmed reply's lease ends.
    successor = over_tcp(local, timeout=5.0)
    assert successor.get_many(10, timeout=30) == ["a", "b", "c"]
    assert server.counters["returned"] == 3 and results.empty()
    successor.close()


def test_items_a_killed_consumer_took_but_never_confirmed_go_back_to_the_front_in_order(server, spawn):
    local = server.create_queue("q", 100)
    local.put_many([1, 2, 3, 4, 5])
    results = spawn.Queue()
    taker = spawn.process(take_without_confirming, server.port, "q", 3, 1.0, results)
    assert results.get(timeout=30) == [1, 2, 3]  # the consumer has them, and dies before confirming
    taker.kill()
    taker.join(10)
    wait_until(lambda: server.counters["returned"] == 3)
    assert server.counters["lease_expired"] == 1
    successor = over_tcp(local, timeout=5.0)
    assert successor.get_many(10, timeout=30) == [1, 2, 3, 4, 5]
    successor.close()


def test_a_consumer_confirms_what_it_got_so_nothing_comes_back(server):
    local = server.create_queue("q", 100)
    consumer = over_tcp(local, timeout=4.0)  # a lease of 4 s: anything unconfirmed would be back soon
    local.put_many(["x", "y"])
    assert consumer.get_many(10, timeout=10) == ["x", "y"]
    wait_until(lambda: server.counters["unconfirmed"] == 0)
    local.put("z")
    assert consumer.get(timeout=10) == "z"
    wait_until(lambda: server.counters["unconfirmed"] == 0)
    assert server.counters["returned"] == 0 and server.counters["lease_expired"] == 0
    consumer.close()


def test_a_newer_request_confirms_the_previous_reply(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 100)
    local.put_many(["a", "b"])
    client_id = os.urandom(16)
    sock = raw_dealer(server.port)
    sock.send(encode_request(key, Op.GET, client_id, 1, "q", max_items=1, lease=30.0))
    assert loads_items(decode_reply(key, [sock.recv()]).payload) == ["a"]
    assert server.counters["unconfirmed"] == 1
    sock.send(encode_request(key, Op.QSIZE, client_id, 2, "q"))  # no CONFIRM: the next request says it all
    reply = decode_reply(key, [sock.recv()])
    assert (reply.status, reply.qsize) == (Status.OK, 1)
    assert server.counters["unconfirmed"] == 0 and server.counters["returned"] == 0
    assert local.get_many(10) == ["b"]
    sock.close()


def test_a_consumer_that_keeps_asking_confirms_with_its_requests_and_close_confirms_the_last(server):
    local = server.create_queue("q", 100)
    consumer = over_tcp(local, timeout=60.0)  # a confirmation of its own would wait 15 s
    local.put_many(list(range(10)))
    assert [consumer.get(timeout=10) for _ in range(10)] == list(range(10))
    counters = server.counters
    assert counters["messages"] == 10  # ten gets, no confirmation messages: each get confirmed the one before
    assert counters["unconfirmed"] == 1  # the last reply waits for the next request, or the confirmer
    consumer.close()
    wait_until(lambda: server.counters["unconfirmed"] == 0)
    assert server.counters["returned"] == 0
