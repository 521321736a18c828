"""Copies of records for fan-out: each extra delivery of a mutable record gets its own object.

When one record goes to several consumers (a broadcast edge, or one stream
read by several operators), consumers in one process would otherwise share
the record object, and one that changes it in place would change what the
others see. The router therefore gives every delivery but one a copy, made
before any delivery is handed over (rule 8 of the architecture), as Flink
copies records for each extra chained output unless object reuse is on.

Immutable records (numbers, strings, bytes, None, and tuples or frozensets of
them) are shared: nobody can change them. Others are copied through pickle
(the fastest deep copy for plain data), or `copy.deepcopy` for what pickle
refuses. Set the job config `copy_on_fanout=False` to share records instead
(faster for large records that no consumer changes).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), range})
_dumps, _loads = pickle.dumps, pickle.loads
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def is_immutable(record: Any) -> bool:
    """True when nobody can change `record` in place (so sharing it is safe)."""
    cls = type(record)
    if cls in _IMMUTABLE:
        return True
    if cls is tuple or cls is frozenset:
        return all(is_immutable(item) for item in record)
    return False


def copy_record(record: Any) -> Any:
    """`record` itself when immutable, else a deep copy of it.

    Raises `TypeError` naming the type when the record can be copied neither
    by pickle nor by `copy.deepcopy`.
    """
    if is_immutable(record):
        return record
    try:
        return _loads(_dumps(record, _PROTOCOL))
    except Exception:
        pass
    try:
        return copy.deepcopy(record)
    except Exception as exc:
        raise TypeError(
            f"a {type(record).__name__} record sent to several consumers cannot be copied ({exc!r}); "
            f"make it picklable, or set the job config copy_on_fanout=False to share it between consumers"
        ) from exc


def copy_records(records: list[Any]) -> list[Any]:
    """A new list of copies (see `copy_record`), in order."""
    return [copy_record(record) for record in records]
