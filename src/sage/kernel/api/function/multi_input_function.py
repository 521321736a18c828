"""Functions over connected streams."""

from __future__ import annotations

from typing import Any

from .base_function import BaseFunction


class CoMapFunction(BaseFunction):
    """One method per input of a connected stream: `map0(record)`, `map1(record)`, ...

    Each returns the output record for a record of that input.
    """


class JoinFunction(BaseFunction):
    """Joins two keyed inputs: `execute(payload, key, tag) -> list` of outputs.

    `tag` is the input the record came from (0 or 1); every record of a key
    reaches the same instance, so per-key state in `self` is safe.
    """

    def execute(self, payload: Any, key: Any, tag: int) -> list[Any] | None:
        raise NotImplementedError(f"{type(self).__name__}.execute(payload, key, tag) must return a list")
