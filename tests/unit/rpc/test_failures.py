"""A dead server is reported within the timeout; a restarted one is reached again; re-sends never double."""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import Op, Status, decode_reply, encode_request, loads_items

from .support import over_tcp, raw_dealer, serve, wait_until

TIMEOUT = 1.0
SLACK = 3.0  # scheduling on a busy 2-core machine; the bound is about not hanging, not speed


def start_server_process(spawn, port: int = 0):
    address, stop = spawn.Queue(), spawn.Event()
    proc = spawn.process(serve, port, ["q"], 10, address, stop)
    return proc, address.get(timeout=30), stop


def test_killed_server_gives_connection_error_in_time_and_a_restarted_one_is_reached(spawn, authkey):
    proc, port, _ = start_server_process(spawn)
    client = RPCQueueDescriptor("127.0.0.1", port, "q", 10, timeout=TIMEOUT)
    client.put("before")
    assert client.get(timeout=5) == "before"

    errors: list[tuple[BaseException, float]] = []

    def blocked_get():
        try:
            client.get()  # blocks forever by the queue.Queue contract, but not on a dead server
        except BaseException as exc:
            errors.append((exc, time.monotonic()))

    getter = threading.Thread(target=blocked_get)
    getter.start()
    proc.kill()
    proc.join(10)
    killed = time.monotonic()
    getter.join(TIMEOUT + SLACK + 5)
    assert isinstance(errors[0][0], ConnectionError)
    assert errors[0][1] - killed < TIMEOUT + SLACK

    def put_and_flush() -> None:
        client.put("nobody there", timeout=0)  # the stream still holds credit: this may return ...
        client.flush()  # ... this cannot

    began = time.monotonic()
    with pytest.raises(ConnectionError, match=f"{port}"):
        put_and_flush()
    assert time.monotonic() - began < TIMEOUT + SLACK

    restarted, same_port, stop = start_server_process(spawn, port)
    assert same_port == port
    client.put_many(["after", "restart"])
    client.flush(10)
    assert client.get_many(10, timeout=5) == ["after", "restart"]
    client.close()
    stop.set()
    restarted.join(10)


def test_items_in_flight_to_a_restarted_server_are_reported_once_then_the_queue_works(spawn, authkey):
    first, port, _ = start_server_process(spawn)
    producer = RPCQueueDescriptor("127.0.0.1", port, "q", 10, timeout=5.0)
    producer.put("to the first server")
    producer.flush(10)
    first.kill()  # no goodbye: the stream still holds credit the first server granted
    first.join(10)
    second, same_port, stop = start_server_process(spawn, port)
    assert same_port == port
    producer.put("sent on credit the first server granted")  # the new server never granted it
    with pytest.raises(ConnectionError, match="restarted"):
        producer.flush(10)
    producer.put("after the report")
    producer.flush(10)
    assert producer.get_many(10, timeout=5) == ["after the report"]
    producer.close()
    stop.set()
    second.join(10)


def test_stopping_server_releases_parked_consumers_and_blocked_producers_at_once(server):
    remote = over_tcp(server.create_queue("q", 2), timeout=30.0)
    producer = over_tcp(server.create_queue("full", 2), timeout=30.0)
    producer.put_many(["x", "y"])
    outcome: dict[str, BaseException] = {}

    def attempt(name, call):
        try:
            call()
        except BaseException as exc:
            outcome[name] = exc

    threads = [
        threading.Thread(target=attempt, args=("get", remote.get)),
        threading.Thread(target=attempt, args=("put", lambda: producer.put("z"))),
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: server.counters["parked"] == 2)
    began = time.monotonic()
    server.stop()
    for thread in threads:
        thread.join(10)
    assert isinstance(outcome["get"], ConnectionError) and "shutting down" in str(outcome["get"])
    assert isinstance(outcome["put"], ConnectionError) and "shutting down" in str(outcome["put"])
    assert time.monotonic() - began < SLACK
    remote.close()
    producer.close()


def test_a_resent_get_is_answered_from_memory_with_the_same_items(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 10)
    local.put_many(["a", "b", "c"])
    client_id, routing_id = os.urandom(16), b"R" + os.urandom(15)
    get = encode_request(key, Op.GET, client_id, 1, "q", max_items=2, lease=30.0)
    first = raw_dealer(server.port, routing_id)
    first.send(get)
    reply = first.recv()
    assert loads_items(decode_reply(key, [reply]).payload) == ["a", "b"]
    first.close()
    # The same client reconnected (its socket keeps its routing id) and sends its get again,
    # as if the reply had been lost: the same items come back, not new ones.
    second = raw_dealer(server.port, routing_id)
    second.send(get)
    assert second.recv() == reply
    counters = server.counters
    assert (counters["duplicates"], counters["requests"], counters["unconfirmed"]) == (1, 1, 1)
    assert local.qsize() == 1
    second.send(encode_request(key, Op.CONFIRM, client_id, 1, "q"))
    wait_until(lambda: server.counters["unconfirmed"] == 0)
    assert local.get_many(10) == ["c"]
    second.close()


def test_a_get_not_confirmed_within_its_lease_goes_back_to_the_front_and_a_copy_is_told_to_retry(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 10)
    local.put_many(["a", "b", "c"])
    sock = raw_dealer(server.port)
    get = encode_request(key, Op.GET, os.urandom(16), 1, "q", max_items=2, lease=0.2)
    sock.send(get)
    assert loads_items(decode_reply(key, [sock.recv()]).payload) == ["a", "b"]
    wait_until(lambda: server.counters["lease_expired"] == 1)
    assert server.counters["returned"] == 2
    sock.send(get)  # a late copy of that get: it gets neither those items nor new ones
    late = decode_reply(key, [sock.recv()])
    assert late.status is Status.RETRY and late.count == 0
    assert local.get_many(10) == ["a", "b", "c"]  # back at the front, in their order
    sock.close()


def test_a_parked_get_its_client_gave_up_on_takes_no_items_and_sends_no_answer(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 10)
    client_id = os.urandom(16)
    sock = raw_dealer(server.port)
    # seq 1 parks a get for a long time; the client gives up on it and sends seq 2.
    sock.send(encode_request(key, Op.GET, client_id, 1, "q", wait=30.0, max_items=5))
    wait_until(lambda: server.counters["parked"] == 1)
    sock.send(encode_request(key, Op.QSIZE, client_id, 2, "q"))
    answer = decode_reply(key, [sock.recv()])
    assert (answer.seq, answer.status) == (2, Status.OK)
    assert server.counters["abandoned"] == 1 and server.counters["parked"] == 0
    local.put_many(["x", "y"])
    assert not sock.poll(200)  # no late answer to seq 1 ...
    assert local.get_many(10) == ["x", "y"]  # ... and it took nothing nobody would read
    sock.close()


def test_get_with_timeout_on_empty_queue_is_empty_not_an_error(server):
    remote = over_tcp(server.create_queue("q", 10), timeout=TIMEOUT)
    began = time.monotonic()
    with pytest.raises(queue.Empty):
        remote.get(timeout=1.5 * TIMEOUT)  # longer than the reply timeout: parked in slices, still healthy
    assert 1.45 * TIMEOUT <= time.monotonic() - began < 2.5 * TIMEOUT + SLACK
    assert server.counters["requests"] >= 2
    remote.close()
