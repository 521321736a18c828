"""Feedback loops in the logical pipeline: futures, feedback edges, and the loops they close.

`env.from_future(name)` adds a "future" transformation: a placeholder stream
that runs no task. `stream.fill_future(future)` makes that stream (the
*filler*) the future's one input. An operator that reads a future reads the
filler instead, over a *feedback edge*. Feedback edges are the only edges
that point back: without them the pipeline is a DAG (a stream can only be
built from streams that exist already). A *loop* is a set of operators that
all reach each other (a strongly connected component); each holds at least
one feedback edge.

How a loop runs (edges that never wait, termination detection, checkpoints)
is described in docs/runtime_tasks.md, "Feedback loops".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ...errors import PipelineError
from ..communication.queue_descriptor import BaseQueueDescriptor
from .transformation import FUTURE, Transformation


@dataclasses.dataclass(frozen=True)
class Link:
    """Records of `upstream` reach input `input_index` of `target`; `feedback` when `target` reads a
    future (`upstream` then is its filler). Such an edge closes a loop when `target` is in the loop;
    an operator outside it that reads the future gets an ordinary edge out of the loop."""

    upstream: Transformation
    target: Transformation
    input_index: int
    feedback: bool


@dataclasses.dataclass
class LoopRole:
    """What one task instance of a loop knows about its loop (picklable: names and descriptors).

    `ring` lists every instance of the loop with its input queue, in the
    order the termination token travels; position 0 leads (it starts the
    rounds and ends the loop). `inner_upstreams` are the upstream instances
    inside the loop (their records are counted; they send no stop signal),
    `feedback_upstreams` those of them that send over a feedback edge.
    """

    loop: int
    position: int
    ring: list[tuple[str, BaseQueueDescriptor]]
    inner_upstreams: frozenset[str]
    feedback_upstreams: frozenset[str]

    @property
    def next_member(self) -> tuple[str, BaseQueueDescriptor]:
        """The instance the termination token goes to from here."""
        return self.ring[(self.position + 1) % len(self.ring)]


def read_through(t: Transformation) -> tuple[Transformation, bool]:
    """The operator whose records an input naming `t` receives, and whether over a feedback edge."""
    if t.kind == FUTURE:
        return t.inputs[0], True
    return t, False


def links(transformations: list[Transformation]) -> Iterator[Link]:
    """Every edge of the pipeline, futures read through (call `check_futures` first)."""
    for t in transformations:
        if t.kind == FUTURE:
            continue
        for index, upstream in enumerate(t.inputs):
            source, feedback = read_through(upstream)
            yield Link(source, t, index, feedback)


def check_futures(transformations: list[Transformation]) -> None:
    """Raise `PipelineError` naming the future when one is never filled, filled twice, filled by a
    stream that does not depend on it (no loop), shares its name with another, or would loop
    through a service pipeline."""
    futures = [t for t in transformations if t.kind == FUTURE]
    seen: set[str] = set()
    for future in futures:
        name = future.future_name
        if name in seen:
            raise PipelineError(f"two futures are named {name!r}; give each from_future() its own name")
        seen.add(str(name))
        if not future.inputs:
            raise PipelineError(f"future {name!r} is never filled: close the loop with stream.fill_future(future), "
                                f"on a stream computed from the future")
        if len(future.inputs) > 1:
            fillers = " and ".join(repr(t.basename) for t in future.inputs)
            raise PipelineError(f"future {name!r} is filled twice (by {fillers}); a future takes one stream")
        filler = future.inputs[0]
        if filler.kind == FUTURE:
            raise PipelineError(f"future {name!r} is filled with a future ({filler.future_name!r}) directly; fill it "
                                f"with a stream computed from it (e.g. future.map(step).fill_future(future))")
        if not _depends_on(filler, future):
            raise PipelineError(
                f"future {name!r} is filled by operator {filler.basename!r}, which does not depend on it: no loop "
                f"is closed; fill a future with a stream computed from it (e.g. "
                f"future.map(step).filter(not_done).fill_future(future))")
        if filler.detached or filler.kind == "collect":
            raise PipelineError(f"future {name!r}: a loop cannot go through a service pipeline (from_service) "
                                f"or a collect()")


def _depends_on(t: Transformation, future: Transformation) -> bool:
    """True when `future` is among the inputs of `t`, directly or further up (other futures read through
    their fillers: a loop may close through several futures)."""
    stack, seen = [t], set()
    while stack:
        current = stack.pop()
        if current is future:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(current.inputs)
    return False


def check_joins(transformations: list[Transformation], strategies: dict[int, str]) -> None:
    """Raise `PipelineError` for a join with an input that is not hash-routed (keyed), as `strategies`
    (see `routing_strategies`) decide once futures are read through."""
    for t in transformations:
        if t.kind != "join":
            continue
        unkeyed = [index for index, upstream in enumerate(t.inputs) if strategies.get(id(upstream)) != "hash"]
        if unkeyed:
            raise PipelineError(f"join operator {t.basename}: input(s) {unkeyed} are not keyed; "
                                f"use .keyby(...) on both inputs")


def find_loops(transformations: list[Transformation]) -> list[list[Transformation]]:
    """The loops of the pipeline, each as its operators in pipeline order (call `check_futures` first).

    The strongly connected components of the edges (Kosaraju's algorithm,
    iterative) that hold more than one operator or an operator feeding
    itself.
    """
    running = [t for t in transformations if t.kind != FUTURE]
    order = {id(t): position for position, t in enumerate(running)}
    forward: dict[int, list[Transformation]] = {id(t): [] for t in running}
    backward: dict[int, list[Transformation]] = {id(t): [] for t in running}
    self_loops: set[int] = set()
    for link in links(running):
        forward[id(link.upstream)].append(link.target)
        backward[id(link.target)].append(link.upstream)
        if link.upstream is link.target:
            self_loops.add(id(link.target))
    finished: list[Transformation] = []
    visited: set[int] = set()
    for start in running:
        if id(start) in visited:
            continue
        visited.add(id(start))
        stack = [(start, iter(forward[id(start)]))]
        while stack:
            node, successors = stack[-1]
            for successor in successors:
                if id(successor) not in visited:
                    visited.add(id(successor))
                    stack.append((successor, iter(forward[id(successor)])))
                    break
            else:
                stack.pop()
                finished.append(node)
    assigned: set[int] = set()
    loops = []
    for root in reversed(finished):
        if id(root) in assigned:
            continue
        component, pending = [], [root]
        assigned.add(id(root))
        while pending:
            node = pending.pop()
            component.append(node)
            for predecessor in backward[id(node)]:
                if id(predecessor) not in assigned:
                    assigned.add(id(predecessor))
                    pending.append(predecessor)
        if len(component) > 1 or id(root) in self_loops:
            loops.append(sorted(component, key=lambda t: order[id(t)]))
    return sorted(loops, key=lambda loop: order[id(loop[0])])
