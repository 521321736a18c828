"""Which operator runs each kind of transformation."""

from __future__ import annotations

from ..context import TaskContext
from ..graph import OperatorSpec
from ..graph.transformation import ASYNC_KINDS
from .operators import SYNC_OPERATORS, ErrorHandler, Operator


def create_operator(spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> Operator:
    """The operator for `spec.kind`, with a fresh function instance bound to `ctx`.

    The async operators are imported on first use: asyncio loads only in a
    process that runs an async task.
    """
    if spec.kind in ASYNC_KINDS:
        from .async_operator import AsyncFlatMapOperator, AsyncMapOperator

        return (AsyncMapOperator if spec.kind == "map_async" else AsyncFlatMapOperator)(spec, ctx, on_error)
    return SYNC_OPERATORS[spec.kind](spec, ctx, on_error)
