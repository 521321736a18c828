"""Which operator runs each kind of transformation."""

from __future__ import annotations

from ..context import TaskContext
from ..graph import OperatorSpec
from .async_operator import AsyncFlatMapOperator, AsyncMapOperator
from .operators import SYNC_OPERATORS, ErrorHandler, Operator

OPERATORS: dict[str, type[Operator]] = {
    **SYNC_OPERATORS,
    "map_async": AsyncMapOperator,
    "flatmap_async": AsyncFlatMapOperator,
}


def create_operator(spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> Operator:
    """The operator for `spec.kind`, with a fresh function instance bound to `ctx`."""
    return OPERATORS[spec.kind](spec, ctx, on_error)
