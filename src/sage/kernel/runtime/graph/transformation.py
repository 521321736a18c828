"""The logical pipeline: one Transformation per operator the user wrote."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...errors import PipelineError
from ..async_calls.policy import CallPolicy

FUTURE = "future"
"""A placeholder stream filled later (`env.from_future`); it runs no task (see `loops`)."""
ASYNC_KINDS = ("map_async", "flatmap_async")
"""The operators that await their function (the others call it and take what it returns)."""
KINDS = ("source", "batch", "map", "filter", "flatmap", "keyby", "sink", "comap", "join", "collect", FUTURE,
         *ASYNC_KINDS)
DRIVER = "driver"
"""The owner of the queues the submitting process reads (`collect`)."""
ON_ERROR = ("fail", "skip")


@dataclasses.dataclass(eq=False)
class Transformation:
    """One operator of the logical pipeline, before parallel expansion.

    `inputs[i]` is the transformation feeding input `i`. `function_class`,
    `args` and `kwargs` build one function instance per parallel task.
    `options` holds backend options (e.g. Ray resources) passed through as is.
    `bind_queues` maps constructor keyword names to queues the graph creates
    (e.g. a pipeline service's request queue), resolved into descriptors at
    compile time. `detached` marks a service pipeline (`service_name` names
    its service): its tasks do not count toward a bounded job's completion
    and are stopped when the job ends. `enveloped` marks a user function in a
    service pipeline (its records are envelopes the operator unwraps for it).
    A "collect" transformation runs no task: its input's instances send to a
    queue the driver reads, keeping at most `collect_capacity` unread records
    once someone iterates (see `runtime.collect`). A "future" runs no task
    either: named `future_name`, its one input is the stream that fills it,
    which the operators reading the future read instead (see `loops`).
    """

    kind: str
    basename: str
    function_class: type | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    parallelism: int = 1
    inputs: list[Transformation] = dataclasses.field(default_factory=list)
    on_error: str = "fail"
    strategy: str | None = None
    keyed: bool = False
    bounded_size: int | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    bind_queues: dict[str, str] = dataclasses.field(default_factory=dict)
    detached: bool = False
    service_name: str | None = None
    enveloped: bool = False
    collect_capacity: int = 0
    future_name: str | None = None
    call_policy: CallPolicy | None = None
    """How an async operator ("map_async", "flatmap_async") makes its calls."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PipelineError(f"operator {self.basename!r}: unknown kind {self.kind!r}")
        if not isinstance(self.parallelism, int) or isinstance(self.parallelism, bool) or self.parallelism < 1:
            raise PipelineError(
                f"operator {self.basename!r}: parallelism must be an int >= 1, got {self.parallelism!r}")
        if self.on_error not in ON_ERROR:
            raise PipelineError(
                f"operator {self.basename!r}: on_error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}"
            )

    @property
    def is_source(self) -> bool:
        return self.kind in ("source", "batch")

    @property
    def runs_tasks(self) -> bool:
        """False for a "collect", which the driver reads without a task, and a "future"."""
        return self.kind not in ("collect", FUTURE)

    def __repr__(self) -> str:
        return f"Transformation({self.kind}:{self.basename} x{self.parallelism})"
