"""A dead server is reported within the timeout; a restarted one is reached again; re-sends never double."""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest
import zmq

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import Op, Status, decode_reply, dumps_items, encode_request, loads_items

from .support import over_tcp, serve, wait_until

TIMEOUT = 1.0
SLACK = 1.0  # scheduling on a busy 2-core machine


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

    began = time.monotonic()
    with pytest.raises(ConnectionError, match=f"{port}"):
        client.put("nobody there", timeout=0)
    assert time.monotonic() - began < TIMEOUT + SLACK

    restarted, same_port, stop = start_server_process(spawn, port)
    assert same_port == port
    client.put_many(["after", "restart"])
    assert client.get_many(10, timeout=5) == ["after", "restart"]
    client.close()
    stop.set()
    restarted.join(10)


def test_stopping_server_releases_parked_clients_at_once(server):
    remote = over_tcp(server.create_queue("q", 10), timeout=30.0)
    outcome: list[BaseException] = []
    getter = threading.Thread(target=lambda: outcome.append(pytest.raises(ConnectionError, remote.get)))
    getter.start()
    wait_until(lambda: server.counters["parked"] == 1)
    began = time.monotonic()
    server.stop()
    getter.join(5)
    assert outcome and "shutting down" in str(outcome[0].value)
    assert time.monotonic() - began < 2.0
    remote.close()


def test_resent_request_is_answered_from_memory_not_executed_twice(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 10)
    client_id = os.urandom(16)

    def request(seq: int, op: Op, payload: bytes = b"", max_items: int = 0) -> bytes:
        return encode_request(key, op, client_id, seq, 0, max_items, 10, "q", payload)

    routing_id = b"R" + os.urandom(15)

    def dealer():
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.routing_id = routing_id  # as the client's sockets: the same id after a reconnect
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        return sock

    first = dealer()
    put = request(1, Op.PUT, dumps_items(["a", "b", "c"]))
    first.send(put)
    reply = first.recv()
    first.close()
    second = dealer()  # the client reconnected
    second.send(put)  # the reply was "lost": send the same request again
    assert second.recv() == reply
    assert decode_reply(key, [reply]).count == 3 and local.qsize() == 3

    get = request(2, Op.GET, max_items=2)
    second.send(get)
    got = second.recv()
    second.send(get)
    assert second.recv() == got
    assert loads_items(decode_reply(key, [got]).payload) == ["a", "b"] and local.get_many(10) == ["c"]

    second.send(put)  # older than the latest: ignored, not executed, not answered
    assert not second.poll(200)
    counters = server.counters
    assert (counters["duplicates"], counters["stale"], counters["requests"]) == (2, 1, 2)
    assert decode_reply(key, [got]).status is Status.OK
    second.close()


def test_a_parked_get_its_client_gave_up_on_takes_no_items_and_sends_no_answer(server, authkey):
    key = Signer(authkey.encode())
    local = server.create_queue("q", 10)
    client_id = os.urandom(16)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    # seq 1 parks a get for a long time; the client gives up on it and sends seq 2.
    sock.send(encode_request(key, Op.GET, client_id, 1, 30.0, 5, 10, "q"))
    wait_until(lambda: server.counters["parked"] == 1)
    sock.send(encode_request(key, Op.QSIZE, client_id, 2, 0, 0, 10, "q"))
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
