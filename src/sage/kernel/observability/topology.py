"""A job's shape as plain data: operators with their instances, routed edges, services and their callers.

Built from an `ExecutionGraph` (compiled, not necessarily running). Who
calls a service cannot be read from the pipeline: `call_service` may be
called from any function, with a name computed at run time. So callers are
only known from a run: pass the service metrics of a job (`callers`, calls
per calling instance) to fill them in; without them `callers_known` is False.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..runtime.communication.router.connection import FEEDBACK
from ..runtime.graph import ExecutionGraph
from ..runtime.graph.execution_graph import routing_strategies
from ..runtime.graph.loops import links


@dataclasses.dataclass
class OperatorNode:
    """One operator: `instances` are its task names (`{name}_{index}`)."""

    id: str
    name: str
    kind: str
    instances: list[str]
    bounded_size: int | None
    detached: bool


@dataclasses.dataclass
class Edge:
    """Records of operator `source` routed to operator `target`'s input `input_index` by `strategy`;
    `feedback` when the edge closes a loop (`fill_future`)."""

    source: str
    target: str
    strategy: str
    input_index: int
    target_inputs: int
    feedback: bool = False


@dataclasses.dataclass
class ServiceNode:
    """A service; `served_by` is the operator id of a pipeline service's `from_service` source.

    `callers` maps a calling instance (a task name, or `service:{name}`)
    to its calls; empty when callers are unknown or nobody called.
    """

    id: str
    name: str
    pipeline: bool
    max_concurrency: int
    served_by: str | None
    callers: dict[str, int]


@dataclasses.dataclass
class Topology:
    name: str
    operators: list[OperatorNode]
    edges: list[Edge]
    services: list[ServiceNode]
    callers_known: bool

    def operator_of(self, instance: str) -> OperatorNode | None:
        """The operator a task instance belongs to (None for a service or an unknown name)."""
        for operator in self.operators:
            if instance in operator.instances:
                return operator
        return None


def topology(graph: ExecutionGraph, name: str | None = None,
             metrics: dict[str, dict[str, Any]] | None = None) -> Topology:
    """The topology of `graph`; with a job's `metrics`, services carry the callers seen at run time."""
    shown = [t for t in graph.transformations if t.kind != "future"]  # a future is drawn as its feedback edges
    ids = {id(t): f"op{index}" for index, t in enumerate(shown)}
    strategies = routing_strategies(graph.transformations)
    operators = [
        OperatorNode(ids[id(t)], t.basename, t.kind, [n.name for n in graph.by_transformation[id(t)]],
                     t.bounded_size, t.detached)
        for t in shown
    ]
    edges = [
        Edge(ids[id(link.upstream)], ids[id(link.target)], strategies[id(link.upstream)], link.input_index,
             len(link.target.inputs), graph.edge_kind(link) == FEEDBACK)
        for link in links(graph.transformations)
    ]
    services = []
    for index, (service_name, node) in enumerate(graph.services.items()):
        served_by = next((ids[id(t)] for t in graph.transformations
                          if t.is_source and t.detached and t.service_name == service_name), None)
        seen = (metrics or {}).get(f"service:{service_name}", {}).get("callers") or {}
        services.append(ServiceNode(f"svc{index}", service_name, node.pipeline, node.max_concurrency, served_by,
                                    dict(seen)))
    return Topology(name or graph.job_id, operators, edges, services, metrics is not None)
