"""Stable hashing of partition keys.

Python's `hash()` of str and bytes is salted per process (`PYTHONHASHSEED`),
so it cannot route a key to the same instance in every process. Keys are
encoded canonically (type tag + value), checksummed with CRC-32 (fast, C,
identical everywhere) and mixed into 64 bits so that `hash % n` spreads keys
evenly for any instance count n.

Keys that are equal in Python hash alike (rule 9 of the architecture): the
encoding is of the value, not the type, wherever Python's `==` crosses types.
`True == 1 == 1.0` and `False == 0 == 0.0 == -0.0`, so bools and integral
floats are encoded as the int they equal; `b"k" == bytearray(b"k")`, so every
bytes-like key is encoded as bytes; tuples are encoded item by item. NaN is
equal to nothing, not even itself, so equality asks nothing of it: every NaN
(any sign or payload) is encoded alike and goes to one instance.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

SUPPORTED_KEY_TYPES = "str, bytes, int, bool, float, None and tuples of them"

_LENGTH = struct.Struct(">I")
_FLOAT = struct.Struct(">d")


def _encode(key: Any, out: bytearray) -> None:
    if key is None:
        out += b"N"
    elif isinstance(key, int):  # bool included: True == 1
        _encode_int(key, out)
    elif isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
        out += b"s" + _LENGTH.pack(len(data)) + data
    elif isinstance(key, float):
        if key.is_integer():  # 2.0 == 2 and -0.0 == 0: the int they equal
            _encode_int(int(key), out)
        elif key != key:
            out += b"n"
        else:
            out += b"f" + _FLOAT.pack(key)
    elif isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
        out += b"b" + _LENGTH.pack(len(data)) + data
    elif isinstance(key, tuple):
        out += b"(" + _LENGTH.pack(len(key))
        for item in key:
            _encode(item, out)
    else:
        raise TypeError(f"unsupported partition key type {type(key).__name__!r}; supported: {SUPPORTED_KEY_TYPES}")


def _encode_int(key: int, out: bytearray) -> None:
    data = int.__repr__(key).encode()  # the digits, whatever a subclass's (IntEnum, bool) __repr__ says
    out += b"i" + _LENGTH.pack(len(data)) + data


_STR_SEED = zlib.crc32(b"s")
_MASK64 = (1 << 64) - 1


def stable_hash(key: Any) -> int:
    """A 64-bit hash of `key`, the same in every process and run; equal keys hash alike.

    Raises `TypeError` naming the type for keys that are not one of
    str, bytes, int, bool, float, None or tuples of them.
    """
    # The common case, without the generic encoder. isinstance, not type(): a str
    # subclass (StrEnum) must hash like the equal plain str.
    if isinstance(key, str):
        crc = zlib.crc32(key.encode("utf-8", "surrogatepass"), _STR_SEED)
    else:
        buf = bytearray()
        _encode(key, buf)
        crc = zlib.crc32(buf)
    # Fibonacci hashing spreads the 32 checksum bits over 64, then folds the high bits down.
    mixed = (crc * 0x9E3779B97F4A7C15) & _MASK64
    return mixed ^ (mixed >> 29)


_ATOMIC_KEY_TYPES = (str, int, float, bytes, type(None))


def check_key(key: Any) -> None:
    """Raise `TypeError` (naming the type) unless `key` is a supported partition key.

    Cheaper than hashing: the operator that makes keys checks each one, so a
    bad key fails (or is skipped) as that record's error, never in routing.
    """
    if isinstance(key, _ATOMIC_KEY_TYPES):
        return
    if isinstance(key, tuple):
        for item in key:
            check_key(item)
        return
    if isinstance(key, (bytearray, memoryview)):
        return
    raise TypeError(f"unsupported partition key type {type(key).__name__!r}; supported: {SUPPORTED_KEY_TYPES}")
