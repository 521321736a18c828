"""How a task's state becomes bytes, and how a pipeline's shape is named.

A task's state is a dict: the function's `get_state()` (under "function") and,
for a list, tuple or range source, how many records it emitted (under
"position"). It is pickled with cloudpickle, so any picklable value works,
classes defined in scripts included.
"""

from __future__ import annotations

import json
from typing import Any

import cloudpickle

from ..graph.transformation import Transformation


def encode(state: Any) -> bytes:
    """The bytes of a task's state (or of records a snapshot keeps); `TypeError` naming what cannot be pickled."""
    try:
        data: bytes = cloudpickle.dumps(state)
    except Exception as exc:
        raise TypeError(f"the state cannot be pickled: {type(exc).__name__}: {exc}") from exc
    return data


def decode(data: bytes) -> Any:
    """What `encode` made the bytes of (bytes this job's store holds, written by the job's own driver)."""
    return cloudpickle.loads(data)


def pipeline_shape(transformations: list[Transformation]) -> str:
    """A canonical description of the operators a checkpoint's state belongs to.

    Names, kinds, parallelism and inputs: a checkpoint restores only into a
    pipeline of the same shape (every task's state goes back to the task of
    the same name, and keyed state to the same key ranges).
    """
    shape = [{"name": t.basename, "kind": t.kind, "parallelism": t.parallelism,
              "inputs": [i.basename for i in t.inputs]}
             for t in transformations if not t.detached]
    return json.dumps(shape, sort_keys=True)


def shape_difference(stored: str, current: str) -> str:
    """In words, how the pipeline of a stored checkpoint differs from the current one."""
    old = {op["name"]: op for op in json.loads(stored)}
    new = {op["name"]: op for op in json.loads(current)}
    notes = [f"operator {name!r} is new" for name in new if name not in old]
    notes += [f"operator {name!r} is gone" for name in old if name not in new]
    for name in new.keys() & old.keys():
        for field in ("kind", "parallelism", "inputs"):
            if old[name][field] != new[name][field]:
                notes.append(f"operator {name!r} {field} was {old[name][field]!r}, is {new[name][field]!r}")
    return "; ".join(sorted(notes)) or "the operators are listed in another order"
