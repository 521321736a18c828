"""RayEnvironment: the same pipelines, with every task and service a Ray actor."""

from __future__ import annotations

from typing import Any

from .environment import BaseEnvironment

RAY_QUEUE_DEFAULTS: dict[str, Any] = {"batch_size": 4096, "buffer_timeout": 0.05, "queue_maxsize": 16384}
"""Config defaults for the "ray" transport, where every batch put or get is an actor call costing
about a millisecond of CPU on each side: batches up to 4096 packets, held up to 50 ms while their
task keeps sending (Flink's default is 100 ms; an idle task still flushes at once), and input
queues of four batches. Keys the user sets win."""


class RayEnvironment(BaseEnvironment):
    """Runs the pipeline on Ray: each task instance and each service is an actor.

    `address=None` joins the Ray of this process if `ray.is_initialized()`,
    else the cluster at `RAY_ADDRESS` if that is set, else starts a local Ray
    bound to 127.0.0.1; "auto", "host:port" or "ray://host:port" connect to a
    cluster. Ray is joined or started at `submit()`, which blocks until every
    actor of the job has started. What the actors print and log appears in
    this process's terminal.

    The default transport is "rpc": ZeroMQ queues hosted by the consuming
    actors. `config={"transport": "ray"}` links them with Ray queue actors
    instead, with larger batches by default (`RAY_QUEUE_DEFAULTS`).
    """

    backend = "ray"

    def __init__(self, name: str, address: str | None = None, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        if config.get("transport") == "ray":
            config = {**RAY_QUEUE_DEFAULTS, **config}
        super().__init__(name, config)
        self.address = address

    def _backend_options(self) -> dict[str, Any]:
        return {"address": self.address}
