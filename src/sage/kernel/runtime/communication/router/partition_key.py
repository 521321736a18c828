"""Stable hashing of partition keys.

Python's `hash()` of str and bytes is salted per process (`PYTHONHASHSEED`),
so it cannot route a key to the same instance in every process. Keys are
encoded canonically (type tag + value), checksummed with CRC-32 (fast, C,
identical everywhere) and mixed into 64 bits so that `hash % n` spreads keys
evenly for any instance count n.
"""

from __future__ import annotations

import zlib
import struct
from typing import Any

_SUPPORTED = "str, bytes, int, bool, float, None and tuples of them"


def _encode(key: Any, out: bytearray) -> None:
    # bool before int: True must not collide with 1.
    if key is None:
        out += b"N"
    elif key is True or key is False:
        out += b"T" if key else b"F"
    elif isinstance(key, int):
        data = int.__repr__(key).encode()  # the digits, whatever a subclass's __str__ says
        out += b"i" + struct.pack(">I", len(data)) + data
    elif isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
        out += b"s" + struct.pack(">I", len(data)) + data
    elif isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
        out += b"b" + struct.pack(">I", len(data)) + data
    elif isinstance(key, float):
        out += b"f" + struct.pack(">d", key)
    elif isinstance(key, tuple):
        out += b"(" + struct.pack(">I", len(key))
        for item in key:
            _encode(item, out)
    else:
        raise TypeError(f"unsupported partition key type {type(key).__name__!r}; supported: {_SUPPORTED}")


_STR_SEED = zlib.crc32(b"s")
_MASK64 = (1 << 64) - 1


def stable_hash(key: Any) -> int:
    """A 64-bit hash of `key` that is the same in every process and run.

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
