"""Compiling the logical pipeline into an execution graph of task instances."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .transformation import Transformation
from ..communication.queue_descriptor import BaseQueueDescriptor
from ..communication.router import Connection

QueueFactory = Callable[[str, int], BaseQueueDescriptor]
"""Makes the descriptor of one queue: `(queue_id, maxsize) -> descriptor`."""


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """What a worker needs to build one operator instance (picklable with cloudpickle)."""

    kind: str
    function_class: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    on_error: str
    strategy: str | None
    num_inputs: int

    def create_function(self) -> Any:
        """A new function instance (one per parallel task)."""
        return self.function_class(*self.args, **self.kwargs)


@dataclasses.dataclass
class TaskNode:
    """One parallel instance of one transformation, named `{basename}_{index}`."""

    name: str
    basename: str
    parallel_index: int
    parallelism: int
    spec: OperatorSpec
    options: dict[str, Any]
    input_qd: BaseQueueDescriptor | None
    downstream_groups: dict[int, dict[int, Connection]] = dataclasses.field(default_factory=dict)
    upstream_names: list[str] = dataclasses.field(default_factory=list)
    bounded_size: int | None = None

    @property
    def is_source(self) -> bool:
        return self.input_qd is None


@dataclasses.dataclass
class ServiceNode:
    """One registered service: its spec and its request queue."""

    name: str
    service_class: type
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    max_concurrency: int
    options: dict[str, Any]
    request_qd: BaseQueueDescriptor

    @property
    def methods(self) -> frozenset[str]:
        """The public methods callers may name (hooks and service-call helpers excluded)."""
        hidden = {"setup", "cleanup", "call_service", "call_service_async"}
        return frozenset(n for n in dir(self.service_class)
                         if not n.startswith("_") and n not in hidden and callable(getattr(self.service_class, n)))


class ExecutionGraph:
    """Task nodes per (transformation, parallel index), their queues, edges and stop counts.

    Every task gets one input queue shared by all its inputs; a packet's
    `input_index` says which input it belongs to. Each upstream instance has
    one broadcast group per downstream edge, holding a connection to every
    instance of the downstream transformation. A task expects one stop signal
    from every upstream instance of every input (`upstream_names`).
    """

    def __init__(self, job_id: str, transformations: list[Transformation], services: dict[str, dict[str, Any]],
                 queue_factory: QueueFactory, queue_maxsize: int, service_queue_maxsize: int) -> None:
        self.job_id = job_id
        self.nodes: dict[str, TaskNode] = {}
        self.by_transformation: dict[int, list[TaskNode]] = {}
        self.transformations = transformations
        for t in transformations:
            spec = OperatorSpec(t.kind, t.function_class, t.args, t.kwargs, t.on_error, t.strategy, len(t.inputs))
            instances = []
            for index in range(t.parallelism):
                name = f"{t.basename}_{index}"
                input_qd = None if t.is_source else queue_factory(f"{job_id}.{name}.in", queue_maxsize)
                node = TaskNode(name, t.basename, index, t.parallelism, spec, dict(t.options), input_qd,
                                bounded_size=t.bounded_size)
                instances.append(node)
                self.nodes[name] = node
            self.by_transformation[id(t)] = instances
        for t in transformations:
            targets = self.by_transformation[id(t)]
            for input_index, upstream in enumerate(t.inputs):
                for source in self.by_transformation[id(upstream)]:
                    group = len(source.downstream_groups)
                    source.downstream_groups[group] = {
                        target.parallel_index: Connection(group, target.parallel_index, target.name,
                                                          target.input_qd, input_index)
                        for target in targets
                    }
                    for target in targets:
                        if source.name not in target.upstream_names:
                            target.upstream_names.append(source.name)
        self.services: dict[str, ServiceNode] = {
            name: ServiceNode(name, s["service_class"], s["args"], s["kwargs"], s["max_concurrency"],
                              dict(s.get("options", {})),
                              queue_factory(f"{job_id}.service.{name}.requests", service_queue_maxsize))
            for name, s in services.items()
        }

    def service_qds(self) -> dict[str, BaseQueueDescriptor]:
        """Request queue descriptor of every service, by service name."""
        return {name: node.request_qd for name, node in self.services.items()}

    def service_methods(self) -> dict[str, frozenset[str]]:
        """Callable method names of every service, by service name."""
        return {name: node.methods for name, node in self.services.items()}

    def sources(self) -> list[TaskNode]:
        return [n for n in self.nodes.values() if n.is_source]
