"""Compiling the logical pipeline into an execution graph of task instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ...errors import PipelineError
from ..async_calls.policy import CallPolicy
from ..communication.queue_descriptor import BaseQueueDescriptor
from ..communication.router import Connection
from ..communication.router.connection import DATA, FEEDBACK, LOOP
from ..service.pipeline_service import bridge_owner, credits_queue, requests_queue
from ..spec import ServiceSpec
from .loops import Link, LoopRole, check_futures, check_joins, find_loops, links
from .transformation import DRIVER, FUTURE, Transformation

QueueFactory = Callable[[str, int, str], BaseQueueDescriptor]
"""Makes the descriptor of one queue: `(queue_id, maxsize, owner) -> descriptor`, where `owner`
names the instance that reads the queue (a transport may host the queue there)."""


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
    enveloped: bool = False
    """True for a user function in a service pipeline: records travel as `Envelope`s around the
    caller's payloads, and the operator unwraps them for the function and wraps its outputs."""
    call_policy: CallPolicy | None = None
    """How an async operator makes its calls (None for the others)."""

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
    group_strategies: dict[int, str] = dataclasses.field(default_factory=dict)
    """Per broadcast group: how records are routed to it (see `routing_strategies`)."""
    bounded_size: int | None = None
    detached: bool = False
    loop: LoopRole | None = None
    """Its part in a feedback loop (None outside loops)."""

    @property
    def is_source(self) -> bool:
        return self.input_qd is None


@dataclasses.dataclass
class DriverQueue:
    """What the driver reads for one `collect`: its queue, and who sends to it (one stop signal each)."""

    name: str
    queue: BaseQueueDescriptor
    capacity: int
    upstream_names: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ServiceNode:
    """One registered service: its spec and its request queue.

    A pipeline service (`pipeline=True`) has no service object: its bridge
    source task serves the request queue, taking credits from `credits_qd`.
    """

    spec: ServiceSpec
    request_qd: BaseQueueDescriptor
    credits_qd: BaseQueueDescriptor | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def service_class(self) -> type | None:
        return self.spec.service_class

    @property
    def args(self) -> tuple[Any, ...]:
        return self.spec.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.spec.kwargs

    @property
    def max_concurrency(self) -> int:
        return self.spec.max_concurrency

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options

    @property
    def pipeline(self) -> bool:
        return self.spec.pipeline

    @property
    def methods(self) -> frozenset[str]:
        """The public methods callers may name (hooks and service-call helpers excluded)."""
        if self.service_class is None:
            return frozenset({"process"})
        hidden = {"setup", "cleanup", "call_service", "call_service_async"}
        return frozenset(n for n in dir(self.service_class)
                         if not n.startswith("_") and n not in hidden and callable(getattr(self.service_class, n)))


def routing_strategies(transformations: list[Transformation]) -> dict[int, str]:
    """How each transformation's output is routed, by `id(transformation)` (inputs listed first).

    A keyby routes by its strategy ("hash", "broadcast", "round_robin"). Other
    operators keep the key a record came with (keys arrive over "hash" and
    "mixed" edges only), so their output is "hash" when every input is
    hash-routed, "round_robin" when no input carries keys (sources included),
    and "mixed" (hash for the keyed records, round-robin for the others)
    otherwise. Records a flatmap emits from `close()` carry no key and go
    round-robin on any edge.

    A future routes as the stream that fills it. Its filler comes later in
    the pipeline, so with loops the rule is applied again until nothing
    changes, and a strategy only ever moves up from round_robin to hash to
    mixed (keys travel on both; mixed is right for keyed and unkeyed records
    alike): so the rounds end, and an edge that may carry a key never drops it.
    """
    strategies: dict[int, str] = {}
    changed = True
    while changed:
        changed = False
        for t in transformations:
            strategy = _strategy(t, strategies)
            old = strategies.get(id(t))
            if strategy is not None and (old is None or _RANK[strategy] > _RANK[old]):
                strategies[id(t)] = strategy
                changed = True
    return strategies


_RANK = {"round_robin": 0, "broadcast": 0, "hash": 1, "mixed": 2}
"""The order in which a strategy may change while loops are resolved (a keyby's own never changes)."""


def _strategy(t: Transformation, known: dict[int, str]) -> str | None:
    """How `t`'s output is routed given the strategies known so far (None: not known yet)."""
    if t.kind == FUTURE:
        return known.get(id(t.inputs[0])) if t.inputs else None
    if t.kind == "keyby":
        return t.strategy or "hash"
    inputs = [known[id(i)] for i in t.inputs if id(i) in known]
    if inputs and all(s == "hash" for s in inputs):
        return "hash"
    if any(s in ("hash", "mixed") for s in inputs):
        return "mixed"
    return "round_robin"


class ExecutionGraph:
    """Task nodes per (transformation, parallel index), their queues, edges and stop counts.

    Every task gets one input queue shared by all its inputs; a packet's
    `input_index` says which input it belongs to. Each upstream instance has
    one broadcast group per downstream edge, holding a connection to every
    instance of the downstream transformation. A task expects one stop signal
    from every upstream instance of every input (`upstream_names`) outside
    its loop, if it is in one. Operators reading a future read its filler
    over feedback edges; each loop's instances get their `LoopRole`.
    Raises `PipelineError` for a pipeline that cannot run (see `check_futures`).
    """

    def __init__(self, job_id: str, transformations: list[Transformation], services: dict[str, ServiceSpec],
                 queue_factory: QueueFactory, queue_maxsize: int, service_queue_maxsize: int, *,
                 queue_prefix: str | None = None, checkpointing: bool = False) -> None:
        check_futures(transformations)
        self.job_id = job_id
        self.queue_prefix = queue_prefix or job_id
        """Every queue id starts with it (a restarted attempt gets fresh queues under a new prefix)."""
        self.nodes: dict[str, TaskNode] = {}
        self.by_transformation: dict[int, list[TaskNode]] = {}
        self.transformations = transformations
        self.services: dict[str, ServiceNode] = {}
        self.queue_owners: dict[str, str] = {}
        """queue id -> name of the instance that reads it (task name or `service:{name}`)."""
        self._factory = queue_factory

        named_queues: dict[str, BaseQueueDescriptor] = {}
        for name, spec in services.items():
            owner = bridge_owner(name, transformations) if spec.pipeline else f"service:{name}"
            node = ServiceNode(spec, self._queue(f"service.{name}.requests", service_queue_maxsize, owner))
            named_queues[requests_queue(name)] = node.request_qd
            if spec.pipeline:
                node.credits_qd = self._queue(f"service.{name}.credits", spec.max_in_flight, owner)
                named_queues[credits_queue(name)] = node.credits_qd
            self.services[name] = node
        self.driver_queues: dict[str, DriverQueue] = {}
        """Per `collect` transformation (by name): the queue the driver reads and the instances sending to it."""
        for t in transformations:
            self.by_transformation[id(t)] = [
                self._add_node(t, index, named_queues, queue_maxsize) for index in range(t.parallelism)
            ] if t.runs_tasks else []
            if t.kind == "collect":
                self.driver_queues[t.basename] = DriverQueue(
                    t.basename, self._queue(f"{t.basename}.driver", queue_maxsize, DRIVER), t.collect_capacity)
        self.loops: list[list[Transformation]] = find_loops(transformations)
        """The feedback loops, each as its operators in pipeline order."""
        self._loop_of = {id(t): index for index, loop in enumerate(self.loops) for t in loop}
        strategies = routing_strategies(transformations)
        check_joins(transformations, strategies)
        for link in links(transformations):
            self._connect(link, strategies)
        for index, loop in enumerate(self.loops):
            self._assign_loop_roles(index, loop)
        self.control_qd = self._queue("control", 0, DRIVER) if checkpointing else None
        """Where tasks send their checkpoint parts, read by the driver (None without checkpoints)."""
        owners = list(self.nodes) + [f"service:{n}" for n, node in self.services.items() if not node.pipeline]
        self.response_qds: dict[str, BaseQueueDescriptor] = {
            owner: self._queue(f"{owner}.responses", 0, owner) for owner in owners
        }
        """Per instance: where answers to its service calls arrive (unbounded: answers are bounded
        by the calls the instance has in flight)."""

    def _queue(self, name: str, maxsize: int, owner: str) -> BaseQueueDescriptor:
        queue_id = f"{self.queue_prefix}.{name}"
        self.queue_owners[queue_id] = owner
        return self._factory(queue_id, maxsize, owner)

    def _add_node(self, t: Transformation, index: int, named_queues: dict[str, BaseQueueDescriptor],
                  queue_maxsize: int) -> TaskNode:
        unknown = sorted(set(t.bind_queues.values()) - set(named_queues))
        if unknown:
            raise PipelineError(f"operator {t.basename!r}: no queue named {', '.join(unknown)} in this job")
        kwargs = {**t.kwargs, **{arg: named_queues[q] for arg, q in t.bind_queues.items()}}
        assert t.function_class is not None, "every transformation that runs tasks has a function"
        spec = OperatorSpec(t.kind, t.function_class, t.args, kwargs, t.on_error, t.strategy, len(t.inputs),
                            enveloped=t.enveloped, call_policy=t.call_policy)
        name = f"{t.basename}_{index}"
        input_qd = None if t.is_source else self._queue(f"{name}.in", queue_maxsize, name)
        node = TaskNode(name, t.basename, index, t.parallelism, spec, dict(t.options), input_qd,
                        bounded_size=t.bounded_size, detached=t.detached)
        self.nodes[name] = node
        return node

    def edge_kind(self, link: Link) -> str:
        """`FEEDBACK` for an edge that closes a loop, `LOOP` for another edge inside one, else `DATA`
        (a future read by an operator outside its loop is an ordinary edge out of the loop)."""
        loop = self._loop_of.get(id(link.target))
        if loop is None or self._loop_of.get(id(link.upstream)) != loop:
            return DATA
        return FEEDBACK if link.feedback else LOOP

    def _connect(self, link: Link, strategies: dict[int, str]) -> None:
        upstream, t = link.upstream, link.target
        if t.kind == "collect":
            self._connect_driver(t, upstream, strategies)
            return
        edge = self.edge_kind(link)
        targets = [(target, target.input_qd) for target in self.by_transformation[id(t)]]
        for source in self.by_transformation[id(upstream)]:
            group = len(source.downstream_groups)
            source.group_strategies[group] = strategies[id(upstream)]
            source.downstream_groups[group] = {
                target.parallel_index: Connection(group, target.parallel_index, target.name, queue,
                                                  link.input_index, edge)
                for target, queue in targets if queue is not None  # a target fed by an input has a queue
            }
            for target, _ in targets:
                if source.name not in target.upstream_names:
                    target.upstream_names.append(source.name)

    def _connect_driver(self, t: Transformation, upstream: Transformation, strategies: dict[int, str]) -> None:
        driver = self.driver_queues[t.basename]
        for source in self.by_transformation[id(upstream)]:
            group = len(source.downstream_groups)
            source.group_strategies[group] = strategies[id(upstream)]
            source.downstream_groups[group] = {0: Connection(group, 0, f"{DRIVER}:{t.basename}", driver.queue)}
            driver.upstream_names.append(source.name)

    def _assign_loop_roles(self, index: int, loop: list[Transformation]) -> None:
        """Give every instance of loop `index` its `LoopRole` (ring in pipeline order, then by instance)."""
        members = [node for t in loop for node in self.by_transformation[id(t)]]
        names = {node.name for node in members}
        ring: list[tuple[str, BaseQueueDescriptor]] = []
        for node in members:
            assert node.input_qd is not None, "an operator in a loop has inputs"
            ring.append((node.name, node.input_qd))
        inner: dict[str, set[str]] = {node.name: set() for node in members}
        feedback: dict[str, set[str]] = {node.name: set() for node in members}
        for node in members:
            for group in node.downstream_groups.values():
                for connection in group.values():
                    if connection.target_name in names:
                        inner[connection.target_name].add(node.name)
                        if connection.edge == FEEDBACK:
                            feedback[connection.target_name].add(node.name)
        for position, node in enumerate(members):
            node.loop = LoopRole(index, position, ring, frozenset(inner[node.name]), frozenset(feedback[node.name]))

    def service_qds(self) -> dict[str, BaseQueueDescriptor]:
        """Request queue descriptor of every service, by service name."""
        return {name: node.request_qd for name, node in self.services.items()}

    def queues(self) -> list[BaseQueueDescriptor]:
        """Every queue descriptor of the job: inputs, service requests and credits, responses."""
        found = [node.input_qd for node in self.nodes.values() if node.input_qd is not None]
        for service in self.services.values():
            found += [qd for qd in (service.request_qd, service.credits_qd) if qd is not None]
        found += [driver.queue for driver in self.driver_queues.values()]
        found += [self.control_qd] if self.control_qd is not None else []
        return found + list(self.response_qds.values())

    def replace_queues(self, replacements: dict[str, BaseQueueDescriptor]) -> None:
        """Swap descriptors by queue id everywhere the graph refers to them.

        Lets a backend compile with placeholders and bind queues once it knows
        where they live (e.g. RPC servers inside the actors that read them).
        Raises `KeyError` naming a queue that has no replacement.
        """
        def swap(descriptor: BaseQueueDescriptor) -> BaseQueueDescriptor:
            return replacements[descriptor.queue_id]

        for node in self.nodes.values():
            if node.input_qd is not None:
                node.input_qd = swap(node.input_qd)
            for group in node.downstream_groups.values():
                for connection in group.values():
                    connection.queue_descriptor = swap(connection.queue_descriptor)
            for arg, value in list(node.spec.kwargs.items()):
                if isinstance(value, BaseQueueDescriptor):
                    node.spec.kwargs[arg] = swap(value)
            if node.loop is not None:
                node.loop.ring = [(name, swap(qd)) for name, qd in node.loop.ring]
        for service in self.services.values():
            service.request_qd = swap(service.request_qd)
            if service.credits_qd is not None:
                service.credits_qd = swap(service.credits_qd)
        self.response_qds = {owner: swap(qd) for owner, qd in self.response_qds.items()}
        for driver in self.driver_queues.values():
            driver.queue = swap(driver.queue)
        if self.control_qd is not None:
            self.control_qd = swap(self.control_qd)

    def service_methods(self) -> dict[str, frozenset[str]]:
        """Callable method names of every service, by service name."""
        return {name: node.methods for name, node in self.services.items()}

    def sources(self) -> list[TaskNode]:
        return [n for n in self.nodes.values() if n.is_source]
