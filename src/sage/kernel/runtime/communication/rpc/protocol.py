"""The wire format of the RPC queue: one-frame messages, authenticated before parsing.

Every message, request or reply, is one ZeroMQ frame (the server's ROUTER
socket adds the peer's routing id in front)::

    header | payload | mac

    header   fixed-size struct (below), then the UTF-8 queue id for requests
    payload  pickled list of items (put requests, get replies), an error text, or nothing
    mac      HMAC-SHA256(key, header + payload), the last 32 bytes

Request header (little-endian): magic ``b"SQq1"``, op (u8), client id (16 bytes),
sequence number (u64), server-side wait in milliseconds (u32), max items (u32),
queue maxsize for creation on first touch (u64), queue id length (u16).

Reply header: magic ``b"SQr1"``, status (u8), client id, sequence number of the
request it answers, count (u32: items accepted by a put, items in a get reply)
and the queue's size after the operation (u64).

The two magics differ, so a captured request can never pass as a reply. The
client id and sequence number inside the authenticated reply header bind a
reply to one request of one client.

Decoding checks the frame count and size, then the MAC, and only then parses
the header; payloads are unpickled by the caller after that. One frame rather
than three: each extra frame costs more than copying a small payload once.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .auth import MAC_SIZE, Signer

REQUEST_MAGIC = b"SQq1"
REPLY_MAGIC = b"SQr1"

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest header + payload a server accepts; clients split bigger batches."""

MAX_WAIT_MS = 2**32 - 1
MAX_QUEUE_ID_BYTES = 2**16 - 1

_REQUEST = struct.Struct("<4sB16sQIIQH")
_REPLY = struct.Struct("<4sB16sQIQ")


class Op(IntEnum):
    """What a request asks for."""

    PUT = 1
    GET = 2
    QSIZE = 3


class Status(IntEnum):
    """How a request ended."""

    OK = 0
    FULL = 1  # a put that ran out of time; `count` items were accepted
    EMPTY = 2  # a get that ran out of time with nothing to return
    ERROR = 3  # the payload is an error text
    SHUTDOWN = 4  # the server is stopping


_OPS = dict(Op._value2member_map_)
_STATUSES = dict(Status._value2member_map_)


class ProtocolError(Exception):
    """A message that is rejected; `reason` is "malformed", "oversized" or "auth"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class Request:
    op: Op
    client_id: bytes
    seq: int
    wait: float
    max_items: int
    maxsize: int
    queue_id: str
    payload: memoryview


@dataclass(slots=True)
class Reply:
    status: Status
    client_id: bytes
    seq: int
    count: int
    qsize: int
    payload: memoryview


def dumps_items(items: list[Any]) -> bytes:
    """Pickle a list of items; falls back to cloudpickle for what pickle refuses (lambdas, locals)."""
    try:
        return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        return cloudpickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def loads_items(payload: bytes | memoryview) -> list[Any]:
    """Unpickle an authenticated payload into a list of items."""
    items = pickle.loads(payload)
    if not isinstance(items, list):
        raise TypeError(f"payload is a {type(items).__name__}, expected a list")
    return items


def request_header_size(queue_id: str) -> int:
    """Bytes of a request's header for `queue_id` (what the payload must leave room for)."""
    return _REQUEST.size + len(queue_id.encode("utf-8"))


def encode_request(
    signer: Signer,
    op: Op,
    client_id: bytes,
    seq: int,
    wait: float,
    max_items: int,
    maxsize: int,
    queue_id: str,
    payload: bytes = b"",
) -> bytes:
    """One request message. `wait` (seconds) is how long the server may park it."""
    qid = queue_id.encode("utf-8")
    wait_ms = min(MAX_WAIT_MS, max(0, round(wait * 1000)))
    header = _REQUEST.pack(REQUEST_MAGIC, op, client_id, seq, wait_ms, max_items, maxsize, len(qid)) + qid
    return b"".join((header, payload, signer.sign(header, payload)))


def encode_reply(
    signer: Signer,
    status: Status,
    client_id: bytes,
    seq: int,
    count: int = 0,
    qsize: int = 0,
    payload: bytes = b"",
) -> bytes:
    """One reply message."""
    header = _REPLY.pack(REPLY_MAGIC, status, client_id, seq, count, qsize)
    return b"".join((header, payload, signer.sign(header, payload)))


def _authenticate(signer: Signer, frames: list[bytes], header_size: int, max_bytes: int | None) -> memoryview:
    """The authenticated body (header + payload) of a one-frame message."""
    if len(frames) != 1:
        raise ProtocolError("malformed", f"{len(frames)} frames, expected 1")
    message = frames[0]
    if max_bytes is not None and len(message) - MAC_SIZE > max_bytes:
        raise ProtocolError("oversized", f"{len(message)} bytes, limit {max_bytes}")
    if len(message) < header_size + MAC_SIZE:
        raise ProtocolError("malformed", f"{len(message)} bytes, shorter than a header and a MAC")
    view = memoryview(message)
    body = view[:-MAC_SIZE]
    if not signer.verify(body, view[-MAC_SIZE:]):
        raise ProtocolError("auth", "MAC does not match the shared key")
    return body


def decode_request(signer: Signer, frames: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> Request:
    """Authenticate and parse a request (`frames` without the routing id); `ProtocolError` if rejected."""
    body = _authenticate(signer, frames, _REQUEST.size, max_bytes)
    magic, op, client_id, seq, wait_ms, max_items, maxsize, qid_len = _REQUEST.unpack_from(body)
    op = _OPS.get(op)
    qid_end = _REQUEST.size + qid_len
    if magic != REQUEST_MAGIC or op is None or qid_end > len(body):
        raise ProtocolError("malformed", "bad request header")
    try:
        queue_id = str(body[_REQUEST.size : qid_end], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("malformed", "queue id is not UTF-8") from None
    return Request(op, client_id, seq, wait_ms / 1000, max_items, maxsize, queue_id, body[qid_end:])


def decode_reply(signer: Signer, frames: list[bytes]) -> Reply:
    """Authenticate and parse a reply; `ProtocolError` when it is rejected.

    Replies have no size limit here: a client only receives answers to its own
    requests, bounded by the `max_items` it asked for.
    """
    body = _authenticate(signer, frames, _REPLY.size, None)
    magic, status, client_id, seq, count, qsize = _REPLY.unpack_from(body)
    status = _STATUSES.get(status)
    if magic != REPLY_MAGIC or status is None:
        raise ProtocolError("malformed", "bad reply header")
    return Reply(status, client_id, seq, count, qsize, body[_REPLY.size :])


def recv_frames(sock: Any, flags: int = 0) -> list[bytes]:
    """Receive one whole multipart message, whatever its frame count (a leaner `recv_multipart`)."""
    frame = sock.recv(flags, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame.bytes)
    return frames
