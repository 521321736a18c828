"""Environments: where a pipeline is declared and from where it is submitted."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import PipelineError
from ..runtime.config import JobConfig
from ..runtime.graph.transformation import FUTURE, Transformation
from ..runtime.job_manager import job_manager
from ..runtime.service.pipeline_service import service_pipeline
from ..runtime.spec import JobSpec, ServiceSpec
from .async_calls import check_service_methods
from .datastream import DataStream, resolve_function
from .function import BatchFunction, SourceFunction
from .function.callable_function import CallableSource
from .function.source_function import IterableBatchFunction
from .job import Job
from .results import Results
from .service import BaseService


class BaseEnvironment:
    """Holds a pipeline under construction and submits it to a backend.

    `config` is a dict of `JobConfig` fields (unknown keys raise
    `PipelineError`). An environment submits once.
    """

    backend: str = ""

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise PipelineError(f"environment name must be a non-empty string, got {name!r}")
        self.name = name
        self.config = JobConfig.from_dict(config)
        self.transformations: list[Transformation] = []
        self.services: dict[str, ServiceSpec] = {}
        self._names: set[str] = set()
        self._results: list[Results] = []
        self._job: Job | None = None

    def check_not_submitted(self, what: str) -> None:
        if self._job is not None:
            raise PipelineError(f"{what}: environment {self.name!r} was already submitted (job {self._job.job_id}); "
                                f"build the whole pipeline before submit()")

    def add_results(self, results: Results) -> None:
        """Remember `results` (of a `collect()`), to bind it to this environment's job at submit."""
        self._results.append(results)

    def add_transformation(self, transformation: Transformation) -> Transformation:
        """Add one operator to the pipeline, numbering its name if another operator has it.

        Raises `PipelineError` once the environment was submitted.
        """
        self.check_not_submitted(f"operator {transformation.basename!r}")
        base, n = transformation.basename, 1
        while transformation.basename in self._names:
            n += 1
            transformation.basename = f"{base}{n}"
        self._names.add(transformation.basename)
        self.transformations.append(transformation)
        return transformation

    # ------------------------------------------------------------------ sources
    def from_batch(self, source: Iterable[Any] | type[BatchFunction], *args: Any, parallelism: int = 1,
                   on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """A bounded stream from a list, any iterable, or a `BatchFunction` class.

        A list, tuple or range with `parallelism > 1` is split by index so
        each item is emitted once; other iterables need `parallelism=1`. A
        BatchFunction class is built with `*args, **kwargs` per instance; its
        `execute()` returning None ends that instance's stream.
        """
        if isinstance(source, type):
            cls, ctor_args, name = resolve_function("from_batch", source, args, BatchFunction, None)
            size = None
        else:
            if isinstance(source, (str, bytes, dict)) or not isinstance(source, Iterable):
                raise PipelineError(
                    f"from_batch: expected a list, an iterable or a BatchFunction class, got {source!r}")
            if args or kwargs:
                raise PipelineError("from_batch: extra arguments given with an iterable source")
            if parallelism != 1 and not isinstance(source, Sequence):
                raise PipelineError(
                    f"from_batch: parallelism={parallelism} needs a list, tuple or range to split; "
                    f"got {type(source).__name__}"
                )
            cls, ctor_args, name = IterableBatchFunction, (source,), "from_batch"
            size = len(source) if isinstance(source, Sequence) else None
        return DataStream(self, self.add_transformation(Transformation(
            kind="batch", basename=name, function_class=cls, args=ctor_args, kwargs=kwargs,
            parallelism=parallelism, on_error=on_error, bounded_size=size, options=dict(resources or {}),
        )))

    def from_source(self, source: type[SourceFunction] | Callable[[], Any], *args: Any, parallelism: int = 1,
                    on_error: str = "fail", resources: dict[str, Any] | None = None, **kwargs: Any) -> DataStream:
        """A stream, possibly unbounded, from a `SourceFunction` class or a zero-argument callable.

        `execute()` returns a record, None when there is nothing now, or a
        `StopSignal` to end the stream; `job.stop()` ends it too.
        """
        cls, ctor_args, name = resolve_function("from_source", source, args, SourceFunction, CallableSource)
        return DataStream(self, self.add_transformation(Transformation(
            kind="source", basename=name, function_class=cls, args=ctor_args, kwargs=kwargs,
            parallelism=parallelism, on_error=on_error, options=dict(resources or {}),
        )))

    # ------------------------------------------------------------------ loops
    def from_future(self, name: str) -> DataStream:
        """A stream filled later: `stream.fill_future(future)` sends that stream's records back here.

        Use it like any stream (connect, map, keyby...) to build a feedback
        loop: records go round until a filter lets them out. A bounded job
        with a loop finishes once its sources ended and no record is left in
        the loop. At submit, `PipelineError` names a future that is never
        filled, filled twice, filled by a stream that does not depend on it,
        or that shares its name with another. See docs/user_guide.md,
        "Feedback loops".
        """
        self.check_not_submitted(f"from_future {name!r}")
        if not isinstance(name, str) or not name:
            raise PipelineError(f"from_future: name must be a non-empty string, got {name!r}")
        return DataStream(self, self.add_transformation(Transformation(
            kind=FUTURE, basename=name, function_class=None, future_name=name)))

    def fill_future(self, future: Transformation, filler: Transformation) -> None:
        """Make `filler` the future's input (what `DataStream.fill_future` calls; checked at submit)."""
        self.check_not_submitted(f"fill_future {future.future_name!r}")
        future.inputs.append(filler)

    # ------------------------------------------------------------------ services
    def register_service(self, name: str, service_class: type[BaseService], *args: Any, max_concurrency: int = 1,
                         resources: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Register a service that functions call by `name`.

        One instance is built per job with `service_class(*args, **kwargs)`;
        `max_concurrency` (>= 1) bounds how many requests it runs at once.
        Raises `PipelineError` for a duplicate name, a class that is not a
        `BaseService` or has an `async def` method (nothing would await it),
        a bad `max_concurrency`, or an environment already submitted.
        """
        self.check_not_submitted(f"register_service {name!r}")
        if not isinstance(name, str) or not name:
            raise PipelineError(f"register_service: name must be a non-empty string, got {name!r}")
        if name in self.services:
            raise PipelineError(f"register_service: a service named {name!r} is already registered")
        if not (isinstance(service_class, type) and issubclass(service_class, BaseService)):
            raise PipelineError(f"register_service {name!r}: expected a BaseService subclass, got {service_class!r}")
        check_service_methods(name, service_class)
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise PipelineError(f"register_service {name!r}: max_concurrency must be an int >= 1, "
                                f"got {max_concurrency!r}")
        self.services[name] = ServiceSpec(name, service_class, args, kwargs, max_concurrency, dict(resources or {}))

    def from_service(self, name: str, max_in_flight: int = 8, parallelism: int = 1) -> DataStream:
        """Start a pipeline that serves calls to service `name` (pipeline-as-service).

        Callers use `call_service(name, payload)`; each payload becomes a
        record of the returned stream, and `.reply()` at its end answers the
        caller. At most `max_in_flight` requests are inside the pipeline at
        once. The service pipeline does not keep a bounded job alive: it is
        stopped (and drains) once the job's other tasks have finished.
        """
        self.check_not_submitted(f"from_service {name!r}")
        if not isinstance(name, str) or not name or name in self.services:
            raise PipelineError(f"from_service: service name {name!r} is empty or already registered")
        spec, bridge = service_pipeline(name, max_in_flight, parallelism)
        stream = DataStream(self, self.add_transformation(bridge))
        self.services[name] = spec
        return stream

    # ------------------------------------------------------------------ submit
    def validate(self) -> None:
        """Check the whole pipeline; raise `PipelineError` or warn, naming the operator."""
        if not self.transformations:
            raise PipelineError(f"environment {self.name!r}: the pipeline has no operators")
        if self.config.checkpointing:
            for t in self.transformations:
                if t.is_source and not t.detached:
                    _check_resumable(t)
        consumed = {id(t) for tr in self.transformations for t in tr.inputs}
        for t in self.transformations:
            if t.kind not in ("sink", "collect") and id(t) not in consumed:
                warnings.warn(f"operator {t.basename!r} ({t.kind}) has no sink downstream: its output is discarded",
                              stacklevel=3)

    def job_spec(self, resume: bool = True) -> JobSpec:
        """The plain description of this environment's job that the runtime runs (see `JobSpec`)."""
        return JobSpec(self.name, self.backend, list(self.transformations), dict(self.services), self.config,
                       self._backend_options(), resume)

    def _backend_options(self) -> dict[str, Any]:
        return {}

    def submit(self, autostop: bool = False, resume: bool = True) -> Job:
        """Start the pipeline and return its `Job` handle.

        With `autostop=True`, block until the bounded job has finished and
        raise `JobFailedError` if it failed. With checkpoints, a job whose
        `checkpoint_dir` holds a complete checkpoint of an unfinished job of
        the same name resumes from it; `resume=False` starts over. Submitting
        an environment twice raises `PipelineError`, and so does a pipeline
        whose checkpoint would not fit (another shape) or that cannot be
        checkpointed (a source that cannot resume).
        """
        if self._job is not None:
            raise PipelineError(f"environment {self.name!r} was already submitted (job {self._job.job_id})")
        self.validate()
        self._job = Job(job_manager().submit(self.job_spec(resume)))
        for results in self._results:
            results._bind(self._job)
        if autostop:
            self._job.wait()
        return self._job


class LocalEnvironment(BaseEnvironment):
    """Runs the pipeline on threads in this process (the embedded default)."""

    backend = "local"


def _check_resumable(t: Transformation) -> None:
    """Refuse a source a checkpointed job could not restart from its snapshot position."""
    if t.function_class is IterableBatchFunction:
        if not isinstance(t.args[0], Sequence):
            raise PipelineError(
                f"operator {t.basename!r}: a {type(t.args[0]).__name__} cannot be replayed after a failure, so a job "
                f"with checkpoints cannot use it as a source; pass a list, tuple or range, or a "
                f"BatchFunction/SourceFunction class with get_state() and restore_state()")
        return
    if not callable(getattr(t.function_class, "get_state", None)) or \
            not callable(getattr(t.function_class, "restore_state", None)):
        name = getattr(t.function_class, "__name__", t.basename)
        raise PipelineError(
            f"operator {t.basename!r}: source {name} has no get_state()/restore_state(), so a job with checkpoints "
            f"could not resume it where it was; give it both (its position is its state), or turn checkpoints off")
