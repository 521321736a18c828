"""Authentication before deserialization, on both sides; garbage is rejected and counted; the server lives on."""

from __future__ import annotations

import os
import pathlib
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import zmq

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.rpc import RPCQueueServer
from sage.kernel.runtime.communication.rpc.auth import Signer
from sage.kernel.runtime.communication.rpc.protocol import (
    Op,
    Status,
    decode_request,
    dumps_items,
    encode_reply,
    encode_request,
)

from .support import over_tcp, raw_dealer, wait_until


class LeavesAMark:
    """Unpickling this creates the file `path`: proof that someone unpickled it."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def test_wrong_key_is_rejected_before_anything_is_unpickled(server, tmp_path):
    marker = tmp_path / "unpickled"
    local = server.create_queue("q", 10)
    intruder = over_tcp(local, timeout=1.0, authkey=secrets.token_hex(32))
    began = time.monotonic()
    with pytest.raises(ConnectionError, match="authkey"):
        intruder.put(LeavesAMark(marker))
    assert time.monotonic() - began < 3.0
    assert not marker.exists()
    assert server.counters["rejected_auth"] >= 1
    assert server.counters["requests"] == 0 and server.counters["bad_payload"] == 0 and local.empty()

    # Control: the same payload with the right key IS unpickled by the server (so the test can fail).
    friend = over_tcp(local)
    friend.put(LeavesAMark(marker))
    friend.flush()
    assert marker.exists() and local.get(timeout=5) is None  # Path.touch returned None
    intruder.close()
    friend.close()


def test_garbage_and_truncated_frames_are_rejected_while_a_good_client_keeps_working(authkey):
    with RPCQueueServer(authkey=authkey, max_message_bytes=4096) as server:
        local = server.create_queue("q", 100)
        good = over_tcp(local, timeout=5.0)
        attacker = raw_dealer(server.port)
        signer = Signer(authkey.encode())
        valid = encode_request(
            signer, Op.DATA, os.urandom(16), 1, "q", position=1, max_items=1, maxsize=100, payload=dumps_items(["evil"])
        )
        bad_magic = b"XXXX" + valid[4:-32]
        attacks = {
            "malformed": [
                [b""],  # empty
                [b"short"],
                [valid[:60]],  # truncated inside the header: too short for a header and a MAC
                [valid, b"extra"],  # two frames
                [bad_magic + signer.sign(bad_magic)],  # a key holder sending a bad header: parsed after auth
            ],
            "auth": [
                [os.urandom(200)],  # random bytes, right size
                [valid[:-1]],  # truncated MAC
                [valid[:-40] + valid[-32:]],  # truncated payload
                [valid[:50] + valid[51:]],  # a byte cut from the header
            ],
            "oversized": [[os.urandom(5000)]],
        }
        expected = {reason: len(messages) for reason, messages in attacks.items()}
        for messages in attacks.values():
            for frames in messages:
                attacker.send_multipart(frames)
                good.put(len(frames))  # the good client is served between attacks
                assert local.get(timeout=5) == len(frames)
        # Far over the limit: ZeroMQ cuts the attacker off before the bytes pile up.
        attacker.send(os.urandom(20_000))
        good.put("after")
        assert local.get(timeout=5) == "after"
        wait_until(
            lambda: all(server.counters[f"rejected_{reason}"] == count for reason, count in expected.items())
        )
        assert local.empty() and server.counters["errors"] == 0 and server.counters["bad_payload"] == 0
        attacker.close()
        good.close()


def test_client_ignores_forged_and_misdirected_replies(authkey, tmp_path):
    """A fake server answers with a wrong-key reply and a right-key reply to another request."""
    marker = tmp_path / "unpickled"
    key = Signer(authkey.encode())
    fake = zmq.Context.instance().socket(zmq.ROUTER)
    fake.linger = 0
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    poison = dumps_items([LeavesAMark(marker)])
    stop = threading.Event()

    def answer_badly():
        while not stop.is_set():
            if not fake.poll(50):
                continue
            identity, *frames = fake.recv_multipart()
            request = decode_request(key, frames)
            wrong_key = encode_reply(
                Signer(b"w" * 32), Status.OK, request.client_id, request.seq, count=1, payload=poison
            )
            wrong_seq = encode_reply(key, Status.OK, request.client_id, request.seq + 7, count=1, payload=poison)
            fake.send_multipart([identity, wrong_key])
            fake.send_multipart([identity, wrong_seq])

    thread = threading.Thread(target=answer_badly)
    thread.start()
    client = RPCQueueDescriptor("127.0.0.1", port, "q", timeout=1.0)
    try:
        with pytest.raises(ConnectionError):
            client.get(timeout=0.1)
    finally:
        stop.set()
        thread.join(5)
        fake.close()
        client.close()
    assert not marker.exists()


def recording(descriptor: RPCQueueDescriptor) -> list[bytes]:
    """Record every request message the descriptor's client sends (a wiretap on its own socket sends)."""
    client = descriptor.queue_instance
    sent: list[bytes] = []
    send = client._send

    def record(sock, message: bytes) -> None:
        sent.append(message)
        send(sock, message)

    client._send = record
    return sent


def test_a_replayed_request_cannot_redirect_a_parked_get(server):
    local = server.create_queue("q", 10)
    consumer = over_tcp(local, timeout=30.0)
    sent = recording(consumer)
    with ThreadPoolExecutor(max_workers=1) as worker:  # one thread: one client id, one sequence
        got = worker.submit(consumer.get_many, 10)
        wait_until(lambda: server.counters["parked"] == 1)
        replayer = raw_dealer(server.port)
        replayer.send(sent[-1])  # the parked get, byte for byte, from another socket
        wait_until(lambda: server.counters["duplicates"] == 1)
        local.put_many(["for", "the", "consumer"])
        assert got.result(30) == ["for", "the", "consumer"]  # the real consumer got its items at once
        assert not replayer.poll(500)  # the replayer got nothing

        # An older request replayed while the consumer's next get is parked changes nothing either.
        got = worker.submit(consumer.get_many, 10)
        wait_until(lambda: server.counters["parked"] == 1)
        replayer.send(sent[0])
        wait_until(lambda: server.counters["stale"] == 1)
        local.put("second")
        assert got.result(30) == ["second"]
        assert not replayer.poll(500)
    replayer.close()
    consumer.close()


def test_a_replayed_data_message_is_not_queued_again_and_does_not_redirect_the_stream(server, monkeypatch):
    from sage.kernel.runtime.communication.rpc import producer as producer_module

    sent: list[tuple[Op, bytes]] = []
    encode = producer_module.encode_request

    def record(*args, **kwargs) -> bytes:
        message = encode(*args, **kwargs)
        sent.append((args[1], message))
        return message

    monkeypatch.setattr(producer_module, "encode_request", record)  # a wiretap on what the producer sends
    local = server.create_queue("q", 10)
    producer = over_tcp(local)
    producer.put("once")
    producer.flush()
    assert local.get_many(10) == ["once"]
    data = [message for op, message in sent if op is Op.DATA]
    assert len(data) == 1

    replayer = raw_dealer(server.port)
    replayer.send(data[0])
    wait_until(lambda: server.counters["duplicates"] == 1)  # its position was queued already
    assert local.empty()
    producer.put("next")
    producer.flush()  # the stream's acknowledgements still reach the producer, not the replayer
    assert local.get_many(10) == ["next"]
    assert not replayer.poll(200)
    replayer.close()
    producer.close()
