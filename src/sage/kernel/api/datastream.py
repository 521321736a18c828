"""DataStream: the chainable handle users build pipelines with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from ..errors import PipelineError
from ..runtime.async_calls.policy import DEFAULT_RETRY_ON
from ..runtime.graph.transformation import ASYNC_KINDS, FUTURE, Transformation
from ..runtime.service.pipeline_service import reply_transformation
from .async_calls import call_policy, check_async_function, check_not_async, operator_label
from .function import (
    AsyncFlatMapFunction,
    AsyncMapFunction,
    BaseFunction,
    CoMapFunction,
    FilterFunction,
    FlatMapFunction,
    JoinFunction,
    KeyByFunction,
    MapFunction,
    PrintSink,
    SinkFunction,
)
from .function.callable_function import (
    CallableAsyncFlatMap,
    CallableAsyncMap,
    CallableFilter,
    CallableFlatMap,
    CallableKeyBy,
    CallableMap,
    CallableSink,
    callable_display_name,
)
from .results import Results


class Pipeline(Protocol):
    """Where streams add their operators (an environment)."""

    def add_transformation(self, transformation: Transformation) -> Transformation:
        """Add `transformation` (made unique by name) and return it."""
        ...

    def add_results(self, results: Results) -> None:
        """Bind `results` to the job once it is submitted."""
        ...

    def fill_future(self, future: Transformation, filler: Transformation) -> None:
        """Make `filler` the input of the future `future` (closing a loop)."""
        ...

KEYBY_STRATEGIES = ("hash", "broadcast", "round_robin")


def resolve_function(
    kind: str, function: Any, args: tuple[Any, ...], base: type, wrapper: type | None
) -> tuple[type, tuple[Any, ...], str]:
    """(function class, constructor args, display name) for a class or a plain callable.

    Raises `PipelineError` naming the operator when `function` is neither a
    subclass of `base` nor (where allowed) a callable, and when an operator
    that does not await its function (all but map_async and flatmap_async)
    is given async code (see `check_not_async`).
    """
    if kind not in ASYNC_KINDS:
        check_not_async(kind, function)
    # A class that is not a function class (int, str, bool...) is a plain callable.
    if isinstance(function, type) and (issubclass(function, BaseFunction) or wrapper is None):
        if not issubclass(function, base):
            raise PipelineError(f"{kind} operator: {function.__name__} is not {_a(base.__name__)} subclass")
        return function, args, function.__name__
    if wrapper is not None and callable(function):
        if args:
            raise PipelineError(f"{operator_label(kind, function)}: extra arguments {args!r} given with a plain "
                                f"callable")
        return wrapper, (function,), callable_display_name(function) or kind
    accepted = f"{_a(base.__name__)} subclass" + (" or a callable" if wrapper is not None else "")
    raise PipelineError(f"{kind} operator: expected {accepted}, got {function!r}")


def _a(noun: str) -> str:
    """`noun` with its indefinite article ("a MapFunction", "an AsyncMapFunction")."""
    return f"{'an' if noun[:1] in 'AEIOU' else 'a'} {noun}"


def add_operator(env: Pipeline, inputs: list[Transformation], kind: str, function: Any,
                 args: tuple[Any, ...], base: type, wrapper: type | None, parallelism: int, on_error: str,
                 resources: dict[str, Any] | None, kwargs: dict[str, Any], **extra: Any) -> DataStream:
    """Add one operator fed by `inputs` to `env`'s pipeline and return its output stream."""
    cls, ctor_args, name = resolve_function(kind, function, args, base, wrapper)
    if wrapper is not None and cls is wrapper and kwargs:
        raise PipelineError(f"{kind} operator: keyword arguments {sorted(kwargs)} given with a plain callable")
    detached = {t.detached for t in inputs}
    if True in detached and (len(detached) > 1 or kind in ("comap", "join")):
        raise PipelineError(f"{kind} operator {name}: a service pipeline (from_service) cannot be connected "
                            f"to other streams")
    transformation = env.add_transformation(Transformation(
        kind=kind, basename=name, function_class=cls, args=ctor_args, kwargs=kwargs,
        parallelism=parallelism, inputs=inputs, on_error=on_error, options=dict(resources or {}),
        detached=True in detached, service_name=inputs[0].service_name if True in detached else None,
        **{"enveloped": True in detached, **extra},
    ))
    return DataStream(env, transformation)


class DataStream:
    """A stream of records produced by one operator.

    Every operator method takes `parallelism=` (>= 1; the number of parallel
    task instances), `on_error=` ("fail" fails the job on an exception in
    the function, "skip" logs, counts and drops the record), `resources=`
    (backend options such as Ray's `num_cpus`), and passes any other
    positional and keyword arguments to the function class's constructor.
    Records flow in order per channel (from one upstream instance to one
    downstream instance).
    """

    def __init__(self, env: Pipeline, transformation: Transformation) -> None:
        self._env = env
        self.transformation = transformation

    def _then(self, *spec: Any, **extra: Any) -> DataStream:
        return add_operator(self._env, [self.transformation], *spec, **extra)

    def map(self, function: type[MapFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
            on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One output record per input record. Keeps the input's partition key."""
        return self._then("map", function, args, MapFunction, CallableMap, parallelism, on_error, resources,
                          kwargs, keyed=self.transformation.keyed)

    def filter(self, function: type[FilterFunction] | Callable[[Any], bool], *args: Any, parallelism: int = 1,
               on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """Keeps the records for which the function returns a true value."""
        return self._then("filter", function, args, FilterFunction, CallableFilter, parallelism, on_error,
                          resources, kwargs, keyed=self.transformation.keyed)

    def flatmap(self, function: type[FlatMapFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
                on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """Zero or more output records per input (returned iterable and/or `self.collect`)."""
        return self._then("flatmap", function, args, FlatMapFunction, CallableFlatMap, parallelism, on_error,
                          resources, kwargs, keyed=self.transformation.keyed)

    def map_async(self, function: type[AsyncMapFunction] | Callable[[Any], Awaitable[Any]], *args: Any,
                  capacity: int = 64, timeout: float | None = None, retries: int = 0, backoff: float = 0.2,
                  retry_on: type[BaseException] | tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
                  rate_limit: float | None = None, ordered: bool = True, parallelism: int = 1,
                  on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One output record per input, from a coroutine (`async def`); many calls in flight per instance.

        Up to `capacity` records per instance are held at once (calls running
        and results waiting to be emitted); a full instance takes no input.
        Each attempt may take `timeout` seconds; a timed-out attempt, or one
        raising an exception in `retry_on`, is retried up to `retries` times
        after `backoff * 2**(k-1)` seconds with jitter. `rate_limit` bounds
        the attempts per second per instance. `ordered=True` emits in input
        order, False as calls complete. Keeps the input's key. After its
        retries a call's exception goes to `on_error`. The end of stream, and
        a checkpoint barrier, wait for every call in flight and follow its
        result. Raises `PipelineError` for a function that is not a coroutine
        function and for a bad setting. See docs/async_and_batching.md.
        """
        check_async_function("map_async", function)
        policy = call_policy("map_async", function, capacity=capacity, timeout=timeout, retries=retries,
                             backoff=backoff, retry_on=retry_on, rate_limit=rate_limit, ordered=ordered)
        return self._then("map_async", function, args, AsyncMapFunction, CallableAsyncMap, parallelism, on_error,
                          resources, kwargs, keyed=self.transformation.keyed, call_policy=policy)

    def flatmap_async(self, function: type[AsyncFlatMapFunction] | Callable[[Any], AsyncIterator[Any]], *args: Any,
                      capacity: int = 64, timeout: float | None = None, retries: int = 0, backoff: float = 0.2,
                      retry_on: type[BaseException] | tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
                      rate_limit: float | None = None, ordered: bool = True, parallelism: int = 1,
                      on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any
                      ) -> DataStream:
        """Zero or more output records per input, yielded by an async generator as they come (streamed tokens).

        The settings are `map_async`'s; `timeout` bounds the wait for each
        next record, and an attempt is retried only before its first record
        (records already emitted stay emitted). With `ordered=True` the
        records of one input come before those of the next, each as soon as
        its turn allows; with False, records of different inputs interleave,
        each input's still in order. Keeps the input's key on every output.
        """
        check_async_function("flatmap_async", function)
        policy = call_policy("flatmap_async", function, capacity=capacity, timeout=timeout, retries=retries,
                             backoff=backoff, retry_on=retry_on, rate_limit=rate_limit, ordered=ordered)
        return self._then("flatmap_async", function, args, AsyncFlatMapFunction, CallableAsyncFlatMap, parallelism,
                          on_error, resources, kwargs, keyed=self.transformation.keyed, call_policy=policy)

    def keyby(self, function: type[KeyByFunction] | Callable[[Any], Any], *args: Any, strategy: str = "hash",
              parallelism: int | None = None, on_error: str = "fail", resources: dict[str, Any] | None = None,
              **kwargs: Any) -> DataStream:
        """Sets each record's partition key; downstream routing follows `strategy`.

        "hash" (default) sends every record of a key to the same downstream
        instance (stable across processes and runs); "broadcast" sends each
        record to every downstream instance; "round_robin" spreads records
        evenly. `parallelism` defaults to this stream's.
        """
        if strategy not in KEYBY_STRATEGIES:
            raise PipelineError(
                f"keyby operator: unknown strategy {strategy!r}; expected one of {', '.join(KEYBY_STRATEGIES)}"
            )
        return self._then("keyby", function, args, KeyByFunction, CallableKeyBy,
                          self.transformation.parallelism if parallelism is None else parallelism, on_error,
                          resources, kwargs,
                          strategy=strategy, keyed=strategy == "hash")

    def sink(self, function: type[SinkFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
             on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """Consumes the records. Returns a stream with no records (for chaining nothing)."""
        return self._then("sink", function, args, SinkFunction, CallableSink, parallelism, on_error, resources,
                          kwargs)

    def collect(self, capacity: int = 10_000) -> Results:
        """Deliver this stream's records to the process that submits the job; returns `Results`.

        Works on every backend and transport: the operator's instances send
        to one more queue, which the submitting process reads; the job
        finishes once every record has arrived there. After
        `env.submit(autostop=True)`, `list(results)` holds the records;
        iterating while the job runs yields them as they arrive. `capacity`
        (>= 1) bounds the records waiting in the driver once an iteration has
        started (see `Results`). Raises `PipelineError` for a bad capacity.
        """
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise PipelineError(f"collect after operator {self.transformation.basename!r}: capacity must be an int "
                                f">= 1, got {capacity!r}")
        if self.transformation.detached:
            raise PipelineError(f"collect after operator {self.transformation.basename!r}: a service pipeline "
                                f"answers with .reply(), it cannot be collected")
        transformation = self._env.add_transformation(Transformation(
            kind="collect", basename="collect", function_class=None, inputs=[self.transformation],
            collect_capacity=capacity,
        ))
        results = Results(transformation.basename, capacity)
        self._env.add_results(results)
        return results

    def reply(self, parallelism: int = 1) -> DataStream:
        """End a service pipeline: answer each record's caller with the record.

        Only on streams that start at `env.from_service(...)`; raises
        `PipelineError` elsewhere. The first record that reaches `reply()`
        for a request answers it; a request whose records are all filtered
        out is never answered: its caller times out, and its in-flight slot
        is freed when the caller's deadline passes.
        """
        reply = reply_transformation(self.transformation, parallelism)
        return DataStream(self._env, self._env.add_transformation(reply))

    def print(self, prefix: str = "", parallelism: int = 1) -> DataStream:
        """A sink that prints every record, optionally after `prefix`."""
        return self.sink(PrintSink, prefix, parallelism=parallelism)

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        """Combine with another stream: input 0 is this stream, input 1 the other (and so on)."""
        return ConnectedStreams(self._env, [self.transformation]).connect(other)

    def fill_future(self, future: DataStream) -> None:
        """Close a feedback loop: this stream's records go back to `future` (from `env.from_future`).

        Operators that read the future receive them, as they receive any
        input. This stream must be computed from the future (else there is
        no loop); a future is filled once. Both are checked at submit, which
        raises `PipelineError` naming the future. Raises `PipelineError` at
        once when `future` is not a future of this stream's environment.
        See docs/user_guide.md, "Feedback loops".
        """
        target = getattr(future, "transformation", None)
        if not isinstance(future, DataStream) or target is None or target.kind != FUTURE:
            raise PipelineError(f"fill_future after operator {self.transformation.basename!r}: expected a stream "
                                f"made by env.from_future(name), got {future!r}")
        if future._env is not self._env:
            raise PipelineError(f"fill_future: future {target.future_name!r} belongs to another environment")
        self._env.fill_future(target, self.transformation)


class ConnectedStreams:
    """Several streams feeding one operator; a record's input index says which."""

    def __init__(self, env: Pipeline, transformations: list[Transformation]) -> None:
        self._env = env
        self.transformations = transformations

    def connect(self, other: DataStream | ConnectedStreams) -> ConnectedStreams:
        """Append another stream (or connected streams) as the next input(s)."""
        if other._env is not self._env:
            raise PipelineError("connect: both streams must belong to the same environment")
        extra = other.transformations if isinstance(other, ConnectedStreams) else [other.transformation]
        return ConnectedStreams(self._env, self.transformations + extra)

    def _then(self, *spec: Any, **extra: Any) -> DataStream:
        return add_operator(self._env, list(self.transformations), *spec, **extra)

    def comap(self, function: type[CoMapFunction], *args: Any, parallelism: int = 1, on_error: str = "fail",
              resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """`map0` handles records of input 0, `map1` of input 1, and so on."""
        n = len(self.transformations)
        if isinstance(function, type) and issubclass(function, CoMapFunction):
            missing = [f"map{i}" for i in range(n) if not callable(getattr(function, f"map{i}", None))]
            if missing:
                raise PipelineError(
                    f"comap operator {function.__name__}: {n} inputs need methods map0..map{n - 1}; "
                    f"missing {', '.join(missing)}"
                )
        return self._then("comap", function, args, CoMapFunction, None, parallelism, on_error, resources, kwargs)

    def join(self, function: type[JoinFunction], *args: Any, parallelism: int = 1, on_error: str = "fail",
             resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """Joins exactly two keyed (hash) inputs; `execute(payload, key, tag)` returns a list of outputs."""
        label = function.__name__ if isinstance(function, type) else repr(function)
        if len(self.transformations) != 2:
            raise PipelineError(f"join operator {label}: needs exactly two inputs, got {len(self.transformations)}")
        # An input computed from a future is keyed or not as the future's filler is: checked at submit.
        unkeyed = [i for i, t in enumerate(self.transformations) if not t.keyed and not _reads_a_future(t)]
        if unkeyed:
            raise PipelineError(
                f"join operator {label}: input(s) {unkeyed} are not keyed; use .keyby(...) on both inputs"
            )
        return self._then("join", function, args, JoinFunction, None, parallelism, on_error, resources, kwargs,
                          keyed=True)

    def map(self, function: type[MapFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
            on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One map over the records of every input (a union)."""
        return self._then("map", function, args, MapFunction, CallableMap, parallelism, on_error, resources, kwargs)

    def flatmap(self, function: type[FlatMapFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
                on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One flatmap over the records of every input (a union): zero or more outputs each."""
        return self._then("flatmap", function, args, FlatMapFunction, CallableFlatMap, parallelism, on_error,
                          resources, kwargs)

    def filter(self, function: type[FilterFunction] | Callable[[Any], bool], *args: Any, parallelism: int = 1,
               on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One filter over the records of every input (a union)."""
        return self._then("filter", function, args, FilterFunction, CallableFilter, parallelism, on_error,
                          resources, kwargs)

    def sink(self, function: type[SinkFunction] | Callable[[Any], Any], *args: Any, parallelism: int = 1,
             on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """One sink over the records of every input (a union)."""
        return self._then("sink", function, args, SinkFunction, CallableSink, parallelism, on_error, resources,
                          kwargs)


def _reads_a_future(t: Transformation) -> bool:
    """True when `t` is a future or computed from one (its keys are known only once the future is filled)."""
    stack, seen = [t], set()
    while stack:
        current = stack.pop()
        if current.kind == FUTURE:
            return True
        if id(current) not in seen:
            seen.add(id(current))
            stack.extend(current.inputs)
    return False
