"""Where a producer stream's state (acknowledgement and credit) goes: to its sender thread, or ahead of a
reply to a get of the same process on the same queue, so that process takes it in with the reply."""

from __future__ import annotations

import os
import threading

from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import Op, Status, decode_reply, dumps_items, encode_request

from .support import over_tcp, raw_dealer, wait_until


def _open_stream(key: Signer, sock, stream: bytes, queue_id: str) -> None:
    """Open a stream with a CREDIT message from `sock` (its sender's socket) and read the grant."""
    sock.send(encode_request(key, Op.CREDIT, stream, 1, queue_id, position=1, wanted=5, lease=30.0, maxsize=10))
    state = decode_reply(key, [sock.recv()])
    assert (state.status, state.client_id, state.limit) == (Status.OK, stream, 5)


def _data(key: Signer, stream: bytes, queue_id: str, item: str) -> bytes:
    return encode_request(
        key, Op.DATA, stream, 2, queue_id, position=1, max_items=1, lease=30.0, maxsize=10,
        payload=dumps_items([item]),
    )


def test_a_stream_state_goes_ahead_of_the_reply_to_a_get_that_names_the_stream(server, authkey):
    key = Signer(authkey.encode())
    server.create_queue("q", 10)
    stream = os.urandom(16)
    sender, consumer = raw_dealer(server.port), raw_dealer(server.port)
    _open_stream(key, sender, stream, "q")
    # A get of the producer's process, parked until the data comes; it names the stream.
    consumer.send(encode_request(key, Op.GET, os.urandom(16), 1, "q", stream=stream, wait=30.0, max_items=1))
    sender.send(_data(key, stream, "q", "x"))
    first = decode_reply(key, [consumer.recv()])
    assert consumer.rcvmore  # one ZeroMQ message: the state, then the reply
    reply = decode_reply(key, [consumer.recv()])
    assert (first.client_id, first.count, first.limit) == (stream, 1, 5)  # position 1 is queued
    assert reply.status is Status.OK and reply.count == 1
    assert not sender.poll(200)  # the sender's socket got no second copy of that state
    sender.close()
    consumer.close()


def test_a_get_on_another_queue_does_not_carry_the_stream_state(server, authkey):
    key = Signer(authkey.encode())
    server.create_queue("q", 10)
    other = server.create_queue("other", 10)
    other.put("y")
    stream = os.urandom(16)
    sender, consumer = raw_dealer(server.port), raw_dealer(server.port)
    _open_stream(key, sender, stream, "q")
    consumer.send(encode_request(key, Op.GET, os.urandom(16), 1, "other", stream=stream, wait=30.0, max_items=1))
    reply = decode_reply(key, [consumer.recv()])
    assert (reply.status, reply.count, consumer.rcvmore) == (Status.OK, 1, False)
    sender.send(_data(key, stream, "q", "x"))
    state = decode_reply(key, [sender.recv()])  # acknowledged to the sender, as ever
    assert (state.client_id, state.count) == (stream, 1)
    sender.close()
    consumer.close()


def test_a_get_takes_in_the_acknowledgement_of_its_process_puts(server):
    local = server.create_queue("q", 10)
    remote = over_tcp(local)
    remote.put("first")
    remote.flush()  # the stream exists on the server
    assert local.get_many(10) == ["first"]
    got: list[str] = []
    getter = threading.Thread(target=lambda: got.append(remote.get(timeout=30)))
    getter.start()
    wait_until(lambda: server.counters["parked"] == 1)  # the get waits on the server
    remote.put("second")  # sent by this thread itself, acknowledged ahead of the getter's reply
    getter.join(30)
    assert got == ["second"]
    remote.flush(timeout=0)  # nothing to wait for: the getter took in the acknowledgement with its reply
    remote.close()
