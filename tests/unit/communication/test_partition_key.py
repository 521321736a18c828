"""stable_hash: deterministic across processes and hash seeds, type-aware, loud on unsupported keys."""

from __future__ import annotations

import enum
import json
import os
import pathlib
import struct
import subprocess
import sys
from collections import Counter

import pytest

from sage.kernel.runtime.communication import stable_hash

from .support import KEYS, route_keys

HERE = pathlib.Path(__file__).parent

# Pinned values: the canonical encoding and hash are a contract (a key must land on
# the same instance after a restart or an upgrade). Change them only on purpose.
GOLDEN = {
    "user-1": 6520459081966026650,
    0: 315337486911149629,
    "": 16168215173988229010,
    None: 9305984001708040229,
    b"raw": 3205498623351759208,
    2.5: 10332250532027554971,
}


@pytest.mark.parametrize(("key", "expected"), list(GOLDEN.items()))
def test_hash_values_are_pinned(key, expected):
    assert stable_hash(key) == expected


def test_hash_is_64_bit_and_spreads_keys_evenly():
    hashes = [stable_hash(f"key-{i}") for i in range(4000)]
    assert all(0 <= h < 2**64 for h in hashes)
    for n in (2, 3, 4, 7):
        counts = Counter(h % n for h in hashes)
        assert len(counts) == n
        assert max(counts.values()) < 1.15 * 4000 / n


def test_unequal_keys_hash_differently_even_when_they_look_alike():
    keys = [0, "", b"", None, (), 1, "1", b"1", 1.5, "1.5", ("a", 1), ("a", "1"), ("ab", "c"), ("a", "bc"),
            (("a",),), ("a",), float("inf"), float("-inf"), 2**64, -(2**64), (0,), ((0,),)]
    assert all(a != b for i, a in enumerate(keys) for b in keys[i + 1:])  # the premise: no two are equal
    assert len({stable_hash(k) for k in keys}) == len(keys)


@pytest.mark.parametrize("equal", [
    (0, 0.0, -0.0, False),
    (1, 1.0, True),
    (2**53, float(2**53)),
    (-7, -7.0),
    ((1, 0.0), (True, -0.0), (1.0, 0)),
    (("k", (1, False)), ("k", (1.0, 0.0))),
    (b"raw", bytearray(b"raw"), memoryview(b"raw")),
])
def test_keys_equal_in_python_hash_alike(equal):
    assert all(a == b for a in equal for b in equal)  # the premise
    assert len({stable_hash(k) for k in equal}) == 1


def test_every_nan_hashes_alike():
    """NaN equals nothing, not even itself; every NaN key goes to one instance."""
    signalling = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    nans = [float("nan"), -float("nan"), float("inf") - float("inf"), signalling]
    assert all(n != n for n in nans)
    assert len({stable_hash(n) for n in nans}) == 1
    assert stable_hash(("k", float("nan"))) == stable_hash(("k", -float("nan")))
    assert stable_hash(float("nan")) not in {stable_hash(k) for k in (0, 0.0, float("inf"), None)}


def test_subclasses_and_buffers_hash_like_their_plain_values():
    class Colour(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    class Loud(int):
        def __str__(self) -> str:
            return "LOUD"

    assert stable_hash(Colour.RED) == stable_hash("red")
    assert stable_hash((Colour.RED, 1)) == stable_hash(("red", 1))
    assert stable_hash(Level.HIGH) == stable_hash(3)
    assert stable_hash(Loud(3)) == stable_hash(3)
    assert stable_hash(bytearray(b"raw")) == stable_hash(memoryview(b"raw")) == stable_hash(b"raw")


@pytest.mark.parametrize(("key", "type_name"), [([1], "list"), ({"a": 1}, "dict"), ({1}, "set"), (object(), "object"),
                                               (("ok", [1]), "list")])
def test_unsupported_key_types_raise_type_error_naming_the_type(key, type_name):
    with pytest.raises(TypeError, match=f"unsupported partition key type '{type_name}'"):
        stable_hash(key)


def _placements_in_subprocess(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    script = (
        "import json; from support import KEYS, route_keys; "
        "print(json.dumps({'salted': hash('probe'), 'placement': route_keys(KEYS, 5)}))"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_processes_with_other_hash_seeds_route_every_key_to_the_same_instance():
    here = route_keys(KEYS, 5)
    first = _placements_in_subprocess("1")
    second = _placements_in_subprocess("2024")
    # The seeds really differ: Python's own str hash disagrees between the two runs.
    assert first["salted"] != second["salted"]
    assert first["placement"] == second["placement"] == here
    assert here == [stable_hash(k) % 5 for k in KEYS]
    assert len(set(here)) == 5
