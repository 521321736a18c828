"""The wire format of the RPC queue: one-frame messages, authenticated before parsing.

Every message, from a client or from the server, is one ZeroMQ frame (the
server's ROUTER socket adds the peer's routing id in front)::

    header | payload | mac

    header   fixed-size struct (below), then the UTF-8 queue id for client messages
    payload  pickled list of items (DATA messages, get replies), an error text, or nothing
    mac      HMAC-SHA256(key, header + payload), the last 32 bytes

A client speaks on two kinds of channel, each with its own random 16-byte
client id and its own message numbers (`seq`):

- a producer *stream* (one per client object and process, driven by a sender
  thread): DATA carries items at consecutive positions, CREDIT asks for
  credit, gives unused credit back, or just shows the producer is alive. Every
  stream message has a new `seq`, re-sends included.
- a *request* channel (one per calling thread): GET and QSIZE are answered by
  one reply; a re-sent request repeats its `seq`. CONFIRM tells the server the
  consumer has the items of GET `seq`. A request names the producer stream of
  its process to the same queue: that stream's new state, if the server has
  one to send, goes ahead of the reply on the same socket (see `server.py`).

Client message header (little-endian, `<4sB16s16sQQQQQIIIIIQH`, 107 bytes), then the queue id:

    magic b"SQq3", op (u8), client id (16 bytes),
    stream (16 bytes) requests: the id of this process's producer stream to the queue (zeros: none)
    seq (u64),
    position (u64)  DATA: position of its first item; CREDIT: the first position not acknowledged
    weight (u64)    credit (see `credits`) the stream's items before `position` used
    wanted (u64)    records the stream wants credit for, counted from its start
    base (u64)      the credit limit the stream kept when it gave credit back last
    epoch (u32)     how often the stream gave credit back
    incarnation (u32) the server instance the stream has talked to (0: none yet)
    wait (u32)      GET: milliseconds the server may park it
    max_items (u32) GET: the most items to return; DATA: the number of items
    lease (u32)     the client's timeout in milliseconds (the server's leases follow it)
    maxsize (u64)   the queue's maxsize, used if this message creates it
    queue id length (u16)

Server message header (`<4sBB16sQQQIIQ`, 62 bytes): magic b"SQr3", status (u8),
flags (u8: RECALL asks a stream for its unused credit), client id, seq (the
request answered; for a stream, its latest message the server handled), count
(items in a get reply; for a stream, the last position queued), limit (a
stream's credit limit in records), epoch (of that limit), incarnation (random
per server start), and the queue's size.

The two magics differ, so a client message never passes as a server message.
The client id and `seq` inside an authenticated header bind a reply to one
request of one client. Decoding checks the frame count and size, then the MAC,
and only then parses the header; payloads are unpickled by the caller after
that.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..queue_descriptor.base_queue_descriptor import WeightedItem
from .auth import MAC_SIZE, Signer

REQUEST_MAGIC = b"SQq3"
REPLY_MAGIC = b"SQr3"

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest header + payload a server accepts; clients split bigger batches."""

MAX_U32 = 2**32 - 1
NO_STREAM = bytes(16)
"""The `stream` of a request from a process that has no producer stream to the queue."""
MAX_QUEUE_ID_BYTES = 2**16 - 1

_REQUEST = struct.Struct("<4sB16s16sQQQQQIIIIIQH")
_REPLY = struct.Struct("<4sBB16sQQQIIQ")


class Op(IntEnum):
    """What a client message asks for."""

    DATA = 1  # stream: queue these items
    CREDIT = 2  # stream: grant me credit, take back what I do not use, or just: I am alive
    GET = 3  # request: take up to max_items items
    CONFIRM = 4  # request: I have the items of GET `seq`
    QSIZE = 5  # request: how many records are queued


STREAM_OPS = (Op.DATA, Op.CREDIT)


class Status(IntEnum):
    """How a request ended, or the state of a stream."""

    OK = 0
    EMPTY = 1  # a get that ran out of time with nothing to return
    ERROR = 2  # the payload is an error text
    SHUTDOWN = 3  # the server is stopping
    RETRY = 4  # the items of this get went back to the queue; ask again with a new request
    RESET = 5  # the server does not know this stream (it restarted): its unconfirmed items are lost


FLAG_RECALL = 1
"""Set on a stream state: other producers wait for credit; give back what you do not use."""

_OPS = dict(Op._value2member_map_)
_STATUSES = dict(Status._value2member_map_)


class ProtocolError(Exception):
    """A message that is rejected; `reason` is "malformed", "oversized" or "auth"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class Request:
    """A client message, authenticated and parsed (see the module docs for the fields)."""

    op: Op
    client_id: bytes
    stream: bytes
    seq: int
    position: int
    weight: int
    wanted: int
    base: int
    epoch: int
    incarnation: int
    wait: float
    max_items: int
    lease: float
    maxsize: int
    queue_id: str
    payload: memoryview


@dataclass(slots=True)
class Reply:
    """A server message, authenticated and parsed (see the module docs for the fields)."""

    status: Status
    flags: int
    client_id: bytes
    seq: int
    count: int
    limit: int
    epoch: int
    incarnation: int
    qsize: int
    payload: memoryview


def records(items: list[Any]) -> int:
    """The records `items` stand for (see `item_weight`): their count, corrected for batch items.

    Equal to `sum(map(item_weight, items))`, at half the cost on the hot
    paths: most items are not `WeightedItem`s.
    """
    return len(items) + sum([item.weight - 1 for item in items if isinstance(item, WeightedItem)])


def credits(items: list[Any]) -> int:
    """The credit `items` need: their records, but none for `overflow` items, which go in whatever
    the queue holds (they still count toward what it holds once queued)."""
    return len(items) + sum([-1 if item.overflow else item.weight - 1
                             for item in items if isinstance(item, WeightedItem)])


def credit(item: Any) -> int:
    """The credit one item needs (see `credits`)."""
    if isinstance(item, WeightedItem):
        return 0 if item.overflow else item.weight
    return 1


def dumps_items(items: list[Any]) -> bytes:
    """Pickle a list of items; falls back to cloudpickle for what pickle refuses (lambdas, locals)."""
    try:
        return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        payload: bytes = cloudpickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        return payload


def loads_items(payload: bytes | memoryview) -> list[Any]:
    """Unpickle an authenticated payload into a list of items."""
    items = pickle.loads(payload)
    if not isinstance(items, list):
        raise TypeError(f"payload is a {type(items).__name__}, expected a list")
    return items


def request_header_size(queue_id: str) -> int:
    """Bytes of a client message's header for `queue_id` (what the payload must leave room for)."""
    return _REQUEST.size + len(queue_id.encode("utf-8"))


def _ms(seconds: float) -> int:
    if not seconds:
        return 0
    ms = round(seconds * 1000)
    return ms if 0 <= ms <= MAX_U32 else (0 if ms < 0 else MAX_U32)


def encode_request(
    signer: Signer,
    op: Op,
    client_id: bytes,
    seq: int,
    queue_id: str,
    *,
    stream: bytes = NO_STREAM,
    position: int = 0,
    weight: int = 0,
    wanted: int = 0,
    base: int = 0,
    epoch: int = 0,
    incarnation: int = 0,
    wait: float = 0.0,
    max_items: int = 0,
    lease: float = 0.0,
    maxsize: int = 0,
    payload: bytes = b"",
) -> bytes:
    """One client message. `wait` and `lease` are in seconds."""
    qid = queue_id.encode("utf-8")
    header = _REQUEST.pack(
        REQUEST_MAGIC, op, client_id, stream, seq, position, weight, wanted, base, epoch, incarnation,
        _ms(wait), max_items, _ms(lease), maxsize, len(qid),
    ) + qid
    return b"".join((header, payload, signer.sign(header, payload)))


def encode_reply(
    signer: Signer,
    status: Status,
    client_id: bytes,
    seq: int,
    *,
    flags: int = 0,
    count: int = 0,
    limit: int = 0,
    epoch: int = 0,
    incarnation: int = 0,
    qsize: int = 0,
    payload: bytes = b"",
) -> bytes:
    """One server message."""
    header = _REPLY.pack(REPLY_MAGIC, status, flags, client_id, seq, count, limit, epoch, incarnation, qsize)
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
    """Authenticate and parse a client message (`frames` without the routing id); `ProtocolError` if rejected."""
    body = _authenticate(signer, frames, _REQUEST.size, max_bytes)
    (magic, op, client_id, stream, seq, position, weight, wanted, base, epoch, incarnation,
     wait_ms, max_items, lease_ms, maxsize, qid_len) = _REQUEST.unpack_from(body)
    op = _OPS.get(op)
    qid_end = _REQUEST.size + qid_len
    if magic != REQUEST_MAGIC or op is None or qid_end > len(body):
        raise ProtocolError("malformed", "bad request header")
    try:
        queue_id = str(body[_REQUEST.size : qid_end], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("malformed", "queue id is not UTF-8") from None
    return Request(
        op, client_id, stream, seq, position, weight, wanted, base, epoch, incarnation, wait_ms / 1000, max_items,
        lease_ms / 1000, maxsize, queue_id, body[qid_end:],
    )


def decode_reply(signer: Signer, frames: list[bytes]) -> Reply:
    """Authenticate and parse a server message; `ProtocolError` when it is rejected.

    Replies have no size limit here: a client only receives answers to its own
    requests, bounded by the `max_items` it asked for.
    """
    body = _authenticate(signer, frames, _REPLY.size, None)
    magic, status, flags, client_id, seq, count, limit, epoch, incarnation, qsize = _REPLY.unpack_from(body)
    status = _STATUSES.get(status)
    if magic != REPLY_MAGIC or status is None:
        raise ProtocolError("malformed", "bad reply header")
    return Reply(status, flags, client_id, seq, count, limit, epoch, incarnation, qsize, body[_REPLY.size :])

