"""The Ray backend: every task and service instance is a Ray actor.

The driver keeps the job manager and dispatcher. Each actor runs the same
`Task` / `ServiceTask` loop as the local backend; its `run()` call returns when
the instance ends, and one driver thread per actor blocks on that result
(`ray.get`), so finishing, failing and dying reach the dispatcher as events,
not through polling. Queues are ZeroMQ queues hosted by the actors that read
them (transport "rpc", the default) or `RayQueueDescriptor`s in a namespace
of their own per job ("ray"); the job's actors and queues are removed when
it ends.

User functions and services travel with cloudpickle; `prepare()` pickles each
one before any actor starts, so one that cannot travel fails the submit with a
`PipelineError` naming its operator and leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
import uuid
from typing import Any

import cloudpickle
import ray

from ...errors import PipelineError, RemoteError
from ..communication.queue_descriptor import PythonQueueDescriptor
from ..communication.queue_descriptor.ray_queue_descriptor import RayQueueDescriptor, shutdown_ray_queues
from ..communication.queue_descriptor.ray_queue_manager import kill_and_wait
from ..communication.queue_descriptor.rpc_queue_descriptor import RPCQueueDescriptor
from ..communication.rpc import RPCQueueServer
from ..context import ServiceContext, TaskContext
from ..graph import ExecutionGraph, ServiceNode, TaskNode
from ..graph.execution_graph import QueueFactory
from ..graph.transformation import DRIVER
from ..portable_error import PortableError
from ..service.service_task import ServiceTask
from ..spec import JobSpec
from ..task import Task, TaskFailure
from .base import ExitCallback
from .ray_output import OUTPUT_MARKS, LogSettings, apply_log_settings, driver_log_settings, mark_output_end

logger = logging.getLogger(__name__)

ACTOR_CONCURRENCY = 4
"""Threads per actor: `run()` holds one; `stop`, `cancel` and `metrics` calls use the others."""

CONTROL_TIMEOUT = 5.0
"""Seconds the driver waits for an actor's metrics or routing answer."""

ACTOR_START_TIMEOUT = 120.0
"""Seconds `prepare()` waits for every actor of a job to be placed and started (resources may be busy)."""

OUTPUT_TIMEOUT = 10.0
"""Seconds a job's end waits for the last output of its actors to be printed in the driver."""

SHUTDOWN_TIMEOUT = 30.0
"""Seconds a second `shutdown()` caller waits for the first one to finish."""

DEFAULT_ACTOR_OPTIONS = {"num_cpus": 0}
"""Actors mostly wait on queues: by default they reserve no CPU, so a dozen fit on 2 cores.
Per-operator `resources=` (num_cpus, num_gpus, resources, memory, ...) override it."""


class _InstanceActor:
    """Runs one Task or ServiceTask inside an actor; the same object for both kinds.

    With the rpc transport the actor first hosts the queues its instance
    reads (`host_queues`), so producers connect straight to their consumer.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.instance: Any = None
        self.rpc_server: Any = None
        # Control calls (stop, cancel, checkpoint triggers) that arrived before the instance was built.
        self._early: list[tuple[str, tuple[Any, ...]]] = []
        self._early_lock = threading.Lock()  # control calls run on other actor threads than run()

    def host_queues(self, queues: list[tuple[str, int]], authkey: bytes) -> tuple[str, int]:
        """Start an RPC queue server on this node's address hosting `queues`; return (host, port).

        The key also becomes this process's `SAGE_KERNEL_AUTHKEY`, so the
        descriptors its instance receives can reach the other actors' servers.
        """
        os.environ["SAGE_KERNEL_AUTHKEY"] = authkey.hex()
        self.rpc_server = RPCQueueServer(node_ip_address(), 0, authkey=authkey.hex()).start()
        for queue_id, maxsize in queues:
            self.rpc_server.attach_queue(queue_id, maxsize)
        return self.rpc_server.advertise_host, self.rpc_server.port

    def __repr__(self) -> str:
        # Ray names the actor by its repr where it forwards the actor's output: "(map_0 pid=...)".
        return self.name

    def run(self, payload: bytes, log_settings: LogSettings, output_token: str | None
            ) -> tuple[str, dict[str, Any], PortableError | None]:
        """Build the instance from a cloudpickled `(factory, args)` pair and run it.

        Logging is configured as in the driver first (`log_settings`). Blocks
        until the instance ends: (status, final metrics, failure or None).
        With an `output_token`, the actor's output ends with that token's end
        mark (see `ray_output`).
        """
        try:
            return self._run(payload, log_settings)
        finally:
            if output_token is not None:
                mark_output_end(output_token)

    def _run(self, payload: bytes, log_settings: LogSettings) -> tuple[str, dict[str, Any], PortableError | None]:
        try:
            apply_log_settings(log_settings)
            factory, args = cloudpickle.loads(payload)
            instance = factory(*args)
            with self._early_lock:
                self.instance = instance
                early, self._early = self._early, []
            for control, args in early:
                getattr(instance, control)(*args)
            status = self.instance.run()
            failure = None
        except TaskFailure as exc:
            status, failure = "failed", PortableError.capture(exc.__cause__ or exc)
        except Exception as exc:  # e.g. a service's __init__/setup failing, or unpickling the payload
            status, failure = "failed", PortableError.capture(exc)
        return status, self.instance.metrics() if self.instance is not None else {}, failure

    def _control(self, name: str, *args: Any) -> None:
        with self._early_lock:
            instance = self.instance
            if instance is None:
                self._early.append((name, args))
                return
        if hasattr(instance, name):  # a service has no checkpoint calls
            getattr(instance, name)(*args)

    def stop(self) -> None:
        self._control("stop")

    def cancel(self) -> None:
        self._control("cancel")

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        self._control("trigger_checkpoint", checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self._control("notify_checkpoint_complete", checkpoint_id)

    def metrics(self) -> dict[str, Any]:
        if self.instance is None:
            return {"status": "starting"}
        metrics: dict[str, Any] = self.instance.metrics()
        return metrics

    def routing_info(self) -> dict[str, Any]:
        instance = self.instance
        if instance is None:  # the driver may ask while the actor is still building its instance
            return {"status": "starting"}
        info: dict[str, Any] = instance.ctx.get_routing_info()
        return info


InstanceActor = ray.remote(max_concurrency=ACTOR_CONCURRENCY)(_InstanceActor)  # type: ignore[call-overload]


class RayHandle:
    """The driver's view of one actor: control calls, last known metrics, the watcher thread."""

    def __init__(self, name: str, actor: Any, payload: bytes, on_exit: ExitCallback,
                 output_token: str | None) -> None:
        self.name = name
        self.actor = actor
        self.output_token = output_token
        self.returned = False
        """True once the actor's `run()` returned (its output then ends with its end mark)."""
        self._on_exit = on_exit
        self._final_metrics: dict[str, Any] | None = None
        self._watcher = threading.Thread(target=self._watch, name=f"sage-ray-watch-{name}", daemon=True)
        self._run_ref = actor.run.remote(payload, driver_log_settings(), output_token)
        self._watcher.start()

    def _watch(self) -> None:
        try:
            status, metrics, failure = ray.get(self._run_ref)
        except ray.exceptions.RayActorError as exc:
            self._on_exit(self.name, "failed", RuntimeError(f"the actor of {self.name} died: {exc}"))
            return
        except Exception as exc:
            self._on_exit(self.name, "failed", exc)
            return
        self.returned = True
        self._final_metrics = metrics
        if failure is not None:
            self._on_exit(self.name, "failed", failure.rebuild(self.name, RemoteError))
        else:
            self._on_exit(self.name, status, None)

    def _call(self, method: str) -> Any:
        return ray.get(getattr(self.actor, method).remote(), timeout=CONTROL_TIMEOUT)

    def stop(self) -> None:
        self.actor.stop.remote()

    def cancel(self) -> None:
        self.actor.cancel.remote()

    def metrics(self) -> dict[str, Any]:
        if self._final_metrics is not None:
            return self._final_metrics
        try:
            metrics: dict[str, Any] = self._call("metrics")
            return metrics
        except Exception as exc:  # the actor is gone or busy: say so instead of failing the caller
            return {"name": self.name, "status": "unknown", "error": repr(exc)}

    def routing_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._call("routing_info")
        return info

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        self.actor.trigger_checkpoint.remote(checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.actor.notify_checkpoint_complete.remote(checkpoint_id)



def node_ip_address() -> str:
    """This process's node address, as Ray sees it (what other nodes connect to)."""
    address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return address


def _ship_by_value(cls: Any) -> None:
    """Let actors rebuild user classes from modules they cannot import (scripts, test files)."""
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    if module is None or module.__name__ in ("__main__", "builtins") or module.__name__.startswith("sage.kernel"):
        return
    path = getattr(module, "__file__", "") or ""
    if "site-packages" not in path and "dist-packages" not in path:
        cloudpickle.register_pickle_by_value(module)


def _serialize(what: str, build: Any, classes: list[Any]) -> bytes:
    """cloudpickle `build` (a `(factory, args)` pair the actor builds the instance from: live locks never
    travel); `PipelineError` naming `what` when it cannot."""
    for cls in classes:
        _ship_by_value(cls)
    try:
        payload: bytes = cloudpickle.dumps(build)
        return payload
    except Exception as exc:
        raise PipelineError(f"{what} cannot be shipped to a Ray actor: {type(exc).__name__}: {exc}") from exc


def _create_ray_queues(graph: ExecutionGraph) -> None:
    """Create the Ray queue actors every job of this shape uses, without waiting for them to start.

    Those are the input, request and credit queues, and the inbox (response
    queue) of each service-pipeline bridge. Other response queues are made on
    an instance's first service call: most instances never call one, and each
    queue actor is a process of its own.
    """
    descriptors = [node.input_qd for node in graph.nodes.values() if node.input_qd is not None]
    descriptors += [driver.queue for driver in graph.driver_queues.values()]
    descriptors += [graph.control_qd] if graph.control_qd is not None else []
    descriptors += [graph.response_qds[name] for name, node in graph.nodes.items() if node.detached and node.is_source]
    for service in graph.services.values():
        descriptors += [qd for qd in (service.request_qd, service.credits_qd) if qd is not None]
    for descriptor in descriptors:
        # Attaching creates the queue actor; trim() then drops the handle: the driver keeps none it
        # does not use (the queue lives on in the job's namespace).
        descriptor.queue_instance  # noqa: B018
        descriptor.trim()


def _resource_demand(options: dict[str, Any]) -> dict[str, float]:
    """What an actor with Ray options `options` needs of a node, in the names nodes report resources by."""
    options = {**DEFAULT_ACTOR_OPTIONS, **options}
    demand = {"CPU": options.get("num_cpus") or 0, "GPU": options.get("num_gpus") or 0,
              "memory": options.get("memory") or 0, **(options.get("resources") or {})}
    return {name: amount for name, amount in demand.items() if amount}


def _plain(resources: dict[str, float]) -> dict[str, float]:
    """Resources without Ray's per-node entries ("node:<ip>"), for messages."""
    return {name: amount for name, amount in sorted(resources.items()) if not name.startswith("node:")}


def _not_started(started: dict[str, Any], instances: dict[str, dict[str, Any]], described: dict[str, str]) -> str:
    """Why start-up timed out: the first instance that waits for resources the cluster has not free,
    else every instance whose actor has not started yet."""
    free = ray.available_resources()  # type: ignore[no-untyped-call]
    waiting = [name for name, ref in started.items() if not ray.wait([ref], timeout=0)[0]]
    for name in waiting:
        demand = _resource_demand(instances.get(name, {}))
        if any(free.get(key, 0) < amount for key, amount in demand.items()):
            return (f"{described.get(name, name)} was not placed within {ACTOR_START_TIMEOUT:g} s: it needs {demand}; "
                    f"free in the cluster now: {_plain(free)}")
    return (f"the actors of {', '.join(described.get(name, name) for name in waiting)} did not start within "
            f"{ACTOR_START_TIMEOUT:g} s")


def _check_placeable(instances: dict[str, dict[str, Any]], described: dict[str, str]) -> None:
    """`PipelineError` naming the first instance whose resources no alive node of the cluster has.

    Ray would wait forever for a node that never comes (an infeasible
    actor); this fails at once, naming each resource no node has enough of,
    or saying that no single node has all of them. It checks the nodes
    alive now: a cluster that adds nodes on demand is not known to it.
    """
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    for name, options in instances.items():
        demand = _resource_demand(options)
        if any(all(node.get(key, 0) >= amount for key, amount in demand.items()) for node in nodes):
            continue
        missing = {key: amount for key, amount in demand.items()
                   if not any(node.get(key, 0) >= amount for node in nodes)}
        need = ", ".join(f"{key}={amount:g}" for key, amount in (missing or demand).items())
        which = "no node of the Ray cluster has" if missing else "no single node of the Ray cluster has all of"
        raise PipelineError(f"{described[name]} cannot be placed: it asks for {need}, which {which} "
                            f"(nodes: {'; '.join(str(_plain(node)) for node in nodes)})")


class RayBackend:
    """Runs each instance as a Ray actor.

    Transports: "rpc" (the default) links the actors with ZeroMQ queues that
    each consuming actor hosts; "ray" with `RayQueueDescriptor`s (a queue
    actor each) in a namespace of the job's own. docs/ray_backend.md says
    why rpc is the default (measured: faster service calls, no queue
    actors to start).
    """

    name = "ray"
    default_transport = "rpc"

    def __init__(self, spec: JobSpec) -> None:
        if not ray.is_initialized():
            raise RuntimeError("RayBackend needs ray.init() first (create_backend does it)")
        self.namespace = f"sage-kernel-{spec.name}-{uuid.uuid4().hex[:12]}"
        self.transport = self.default_transport  # until queue_factory() is told the job's
        self._actors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._shut_down = False
        self._killed: set[str] = set()
        self._gone = threading.Event()
        self._driver_server: Any = None
        self._handles: list[RayHandle] = []
        self._forwarding_output = OUTPUT_MARKS.install()

    def queue_factory(self, transport: str) -> QueueFactory:
        """Ray queues in the job's namespace; for "rpc", placeholders that `prepare()` replaces.

        Remembers `transport` for `prepare()`.
        """
        self.transport = transport
        if transport == "ray":
            namespace = self.namespace
            return lambda queue_id, maxsize, owner: RayQueueDescriptor(maxsize=maxsize, queue_id=queue_id,
                                                                       namespace=namespace)
        if transport == "rpc":
            return lambda queue_id, maxsize, owner: PythonQueueDescriptor(maxsize=maxsize, queue_id=queue_id)
        if transport == "python":
            raise PipelineError("transport 'python' links threads of one process; Ray actors need 'ray' or 'rpc'")
        raise PipelineError(f"the Ray backend does not support transport {transport!r}")

    @staticmethod
    def _actor_class(name: str, options: dict[str, Any]) -> Any:
        """The actor class with `name`'s resource options; `PipelineError` for options Ray rejects."""
        try:
            return InstanceActor.options(**{**DEFAULT_ACTOR_OPTIONS, **options})
        except (TypeError, ValueError) as exc:
            raise PipelineError(f"operator {name}: bad Ray resources {options!r}: {exc}") from exc

    def _actor(self, name: str, options: dict[str, Any]) -> Any:
        """The actor for instance `name`, created on first use with its resource options."""
        actor = self._actors.get(name)
        if actor is None:
            actor = self._actor_class(name, options).remote(name)
            with self._lock:
                self._actors[name] = actor
        return actor

    def prepare(self, graph: ExecutionGraph) -> None:
        """Check that every instance can travel and be placed, then start its actor; with rpc, place the queues.

        Raises `PipelineError`, before any actor exists, naming the first
        operator or service that cloudpickle refuses, whose resource options
        Ray rejects, or that asks for resources no node of the cluster has
        (see `_check_placeable`). (Each is pickled again, with its context,
        when it starts: the rpc step below rebinds queues.)

        Then creates every actor and blocks until all of them have started,
        up to `ACTOR_START_TIMEOUT` seconds in all: placing them all before
        any runs means a job never runs half-placed, waiting for an actor
        that cannot be placed (resources held by other work), and its
        instances start together. An actor not started in time, or that dies
        starting, fails the submit with a `PipelineError` naming it and what
        it asked for, and nothing is left behind.

        With Ray queues: the queue actors the job will use are created first,
        so they start side by side with the task actors.

        With the rpc transport: each actor starts by hosting the queues it
        reads: an RPC queue server on its node's address, and the graph's
        placeholder descriptors are replaced by descriptors of those servers,
        all sharing one random per-job key.
        """
        instances: dict[str, dict[str, Any]] = {}
        described: dict[str, str] = {}
        for node in graph.nodes.values():
            reason = getattr(node.spec.function_class, "local_only_reason", None)
            if reason:
                raise PipelineError(f"operator {node.basename!r} cannot run on Ray: {reason}")
            _serialize(f"operator {node.name!r}", node.spec, [node.spec.function_class])
            self._actor_class(node.name, node.options)
            instances[node.name] = node.options
            described[node.name] = f"operator {node.basename!r} (instance {node.name})"
        for name, service in graph.services.items():
            if not service.pipeline:
                _serialize(f"service {name!r}", (service.service_class, service.args, service.kwargs),
                           [service.service_class])
                self._actor_class(f"service:{name}", service.options)
                instances[f"service:{name}"] = service.options
                described[f"service:{name}"] = f"service {name!r}"
        _check_placeable(instances, described)
        if self.transport == "ray":
            _create_ray_queues(graph)
            started = {name: self._actor(name, options).__ray_ready__.remote() for name, options in instances.items()}
            self._await_started(started, instances, described)
            return
        authkey = secrets.token_bytes(32)
        by_owner: dict[str, list[tuple[str, int]]] = {name: [] for name in instances}
        maxsizes = {qd.queue_id: qd.maxsize for qd in graph.queues()}
        for queue_id, owner in graph.queue_owners.items():
            by_owner.setdefault(owner, []).append((queue_id, maxsizes[queue_id]))
        replacements = {}
        driver_queues = by_owner.pop(DRIVER, [])
        if driver_queues:
            # The driver reads the collect() queues: it hosts them, reachable from every node.
            self._driver_server = RPCQueueServer(node_ip_address(), 0, authkey=authkey.hex()).start()
            for queue_id, maxsize in driver_queues:
                replacements[queue_id] = self._driver_server.create_queue(queue_id, maxsize)
        addresses = {owner: self._actor(owner, instances.get(owner, {})).host_queues.remote(queues, authkey)
                     for owner, queues in by_owner.items()}
        for owner, (host, port) in self._await_started(addresses, instances, described).items():
            for queue_id, maxsize in by_owner[owner]:
                replacements[queue_id] = RPCQueueDescriptor(host, port, queue_id, maxsize, authkey=authkey.hex())
        graph.replace_queues(replacements)

    def _await_started(self, started: dict[str, Any], instances: dict[str, dict[str, Any]],
                       described: dict[str, str]) -> dict[str, Any]:
        """The results of each actor's first call (`started`, by instance), awaited together up to
        `ACTOR_START_TIMEOUT` seconds. Raises `PipelineError` when one does not start in time, dies, or its
        first call raises (e.g. its queue server cannot bind); the caller releases the job's actors."""
        deadline = time.monotonic() + ACTOR_START_TIMEOUT
        results = {}
        for name, ref in started.items():
            what = described.get(name, name)
            try:
                results[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except ray.exceptions.GetTimeoutError as exc:
                raise PipelineError(_not_started(started, instances, described)) from exc
            except ray.exceptions.RayActorError as exc:
                raise PipelineError(f"the actor of {what} died while starting: {exc}") from exc
            except ray.exceptions.RayError as exc:  # its first call raised
                raise PipelineError(f"the actor of {what} failed while starting: {exc}") from exc
        return results

    def _start(self, name: str, factory: Any, args: tuple[Any, ...], classes: list[Any], options: dict[str, Any],
               on_exit: ExitCallback) -> RayHandle:
        payload = _serialize(name, (factory, args), classes)
        token = f"{self.namespace}/{name}" if self._forwarding_output else None
        handle = RayHandle(name, self._actor(name, options), payload, on_exit, token)
        with self._lock:
            self._handles.append(handle)
        return handle

    def start_task(self, node: TaskNode, ctx: TaskContext, on_exit: ExitCallback) -> RayHandle:
        """Start the task's actor and its `run()`; `on_exit` fires from a driver thread when it ends."""
        return self._start(node.name, Task, (ctx, node.spec), [node.spec.function_class], node.options, on_exit)

    def start_service(self, node: ServiceNode, ctx: ServiceContext, on_exit: ExitCallback) -> RayHandle:
        return self._start(f"service:{node.name}", ServiceTask, (ctx, node.service_class, node.args, node.kwargs),
                           [node.service_class], node.options,
                           lambda name, status, error: on_exit(node.name, status, error))

    def shutdown(self) -> None:
        """Kill the job's actors and its queues; nothing of the job stays in the cluster.

        First waits, up to `OUTPUT_TIMEOUT` seconds, until what the actors
        whose instance has ended wrote to stdout and stderr is printed here
        (when this driver forwards worker output; see `ray_output`). Then
        blocks until Ray reports them dead (a few seconds at most). The first
        call does the work; a later one kills the actors created since (an
        instance whose start raced a failure) and waits for the first, up to
        `SHUTDOWN_TIMEOUT` seconds. Errors are logged, never raised: this runs
        on the way out of a job that may be failing already.
        """
        with self._lock:
            first, self._shut_down = not self._shut_down, True
            actors = [actor for name, actor in self._actors.items() if name not in self._killed]
            self._killed.update(self._actors)
        if not first:
            try:
                kill_and_wait(actors)
            except Exception as exc:
                logger.warning("killing late actors of Ray job namespace %s: %r", self.namespace, exc)
            self._gone.wait(SHUTDOWN_TIMEOUT)
            return
        self._wait_for_output()
        try:
            kill_and_wait(actors)
            shutdown_ray_queues(self.namespace)
            if self._driver_server is not None:
                self._driver_server.stop()
        except Exception as exc:
            logger.warning("cleaning up Ray job namespace %s: %r", self.namespace, exc)
        finally:
            self._gone.set()

    def _wait_for_output(self) -> None:
        with self._lock:
            tokens = {h.output_token: h.name for h in self._handles if h.returned and h.output_token is not None}
        missing = OUTPUT_MARKS.wait(tokens, OUTPUT_TIMEOUT)
        if missing:
            logger.warning("output of %s may still be on its way from Ray (not here within %.0f s)",
                           ", ".join(tokens[token] for token in missing), OUTPUT_TIMEOUT)
