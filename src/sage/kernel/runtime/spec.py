"""What the api hands the runtime: a plain, picklable description of one job.

The api builds a `JobSpec` (the job's name, the backend to run on, the
logical pipeline as `Transformation`s, the registered services as
`ServiceSpec`s, the `JobConfig`) and submits it; the runtime never sees an
environment object.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import JobConfig
from .graph.transformation import Transformation

BACKENDS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """One registered service.

    An object service (`pipeline=False`) is built once per job with
    `service_class(*args, **kwargs)` and answers up to `max_concurrency`
    requests at once. A pipeline service (`pipeline=True`, see
    `runtime.service.pipeline_service`) has no object: a service pipeline
    answers its calls, with at most `max_in_flight` requests inside it.
    `options` are backend options (e.g. Ray resources), passed through.
    """

    name: str
    service_class: type | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_concurrency: int = 1
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    pipeline: bool = False
    max_in_flight: int = 0


@dataclasses.dataclass
class JobSpec:
    """One job to run: its pipeline, services, configuration and backend.

    `backend` is "local" (threads of this process) or "ray" (Ray actors);
    `backend_options` are what that backend needs to find its cluster (for
    Ray: `address`). `resume`: with checkpoints, start from the last complete
    checkpoint of a job of this name (False starts over).
    """

    name: str
    backend: str
    transformations: list[Transformation]
    services: dict[str, ServiceSpec]
    config: JobConfig
    backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume: bool = True

    @property
    def transport(self) -> str | None:
        """The transport the config asks for (None: the backend's default)."""
        return self.config.transport
