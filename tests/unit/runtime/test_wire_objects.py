"""Everything that crosses a process boundary survives a pickle round trip with every field in place.

The local backend never pickles these objects, so a broken `__reduce__` (fields
in the wrong order, one left out) would otherwise only show on Ray or RPC.
"""

from __future__ import annotations

import pickle

import pytest

from sage.kernel.runtime.communication import Batch, Connection, Packet, PythonQueueDescriptor, StopSignal
from sage.kernel.runtime.communication.router import UNKEYED, CheckpointBarrier, FeedbackBatch
from sage.kernel.runtime.graph.loops import LoopRole
from sage.kernel.runtime.loop import LoopEnd, LoopToken
from sage.kernel.runtime.portable_error import PortableError
from sage.kernel.runtime.service.pipeline_service import Envelope
from sage.kernel.runtime.service.protocol import ServiceRequest, ServiceResponse


def fields(obj: object) -> dict[str, object]:
    names = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}


def same(a: object, b: object) -> bool:
    if isinstance(a, PythonQueueDescriptor):
        return isinstance(b, PythonQueueDescriptor) and a.to_dict() == b.to_dict()
    if fields(a):
        return type(a) is type(b) and same_fields(a, b)
    return a == b


def same_fields(a: object, b: object) -> bool:
    fa, fb = fields(a), fields(b)
    return fa.keys() == fb.keys() and all(same(fa[k], fb[k]) for k in fa)


QUEUE = PythonQueueDescriptor(maxsize=3, queue_id="wire-test")

OBJECTS = [
    Batch([1, {"a": 2}], ["k", UNKEYED], 1, "map_0"),
    Batch(["x"]),
    Packet({"v": 1}, 2, ("k", 1), "hash", 12.5),
    StopSignal("done", "src_3", {"why": "end"}, 3.5),
    Connection(1, 2, "join_2", QUEUE, 1),
    Connection(0, 1, "step_1", QUEUE, 1, "feedback"),
    FeedbackBatch([3, 4], None, 1, "filter_0"),
    CheckpointBarrier(7, "map_1"),
    LoopToken(1, 4, -2, True),
    LoopEnd(1),
    ServiceRequest("id-1", "calc", "add", (1, 2), {"scale": 3}, 99.5, QUEUE, "Caller_0"),
    ServiceResponse("id-1", True, value=[1, 2]),
    Envelope({"q": "x"}, ServiceRequest("id-2", "svc", "process", ("x",), {}, 5.0, QUEUE, "c"), QUEUE),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_round_trip_keeps_every_field(obj: object) -> None:
    back = pickle.loads(pickle.dumps(obj))
    assert type(back) is type(obj)
    assert same_fields(obj, back), (fields(obj), fields(back))


def test_a_loop_role_travels_with_its_ring() -> None:
    role = LoopRole(0, 1, [("step_0", QUEUE), ("step_1", QUEUE)], frozenset({"filter_0"}), frozenset({"filter_0"}))
    back = pickle.loads(pickle.dumps(role))
    assert (back.loop, back.position, back.inner_upstreams, back.feedback_upstreams) == (
        0, 1, frozenset({"filter_0"}), frozenset({"filter_0"}))
    assert [name for name, _ in back.ring] == ["step_0", "step_1"] and back.next_member[0] == "step_0"


def test_unkeyed_stays_the_one_marker() -> None:
    assert pickle.loads(pickle.dumps(UNKEYED)) is UNKEYED


def test_portable_error_round_trip() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        packed = PortableError.capture(exc)
    back = pickle.loads(pickle.dumps(packed))
    assert (back.type_name, back.message) == ("builtins.KeyError", "'missing'")
    assert "KeyError" in back.traceback and isinstance(back.error, KeyError)
