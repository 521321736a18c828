"""RayEnvironment: the same pipelines, with every task and service a Ray actor."""

from __future__ import annotations

import os
import sys
from typing import Any

from .environment import BaseEnvironment


def ensure_ray(address: str | None) -> None:
    """Join the running Ray, connect to `address`, or start a local Ray bound to 127.0.0.1.

    `address=None`: use Ray if `ray.is_initialized()`, else start a local
    instance on the loopback address only. "auto" or "ray://host:port"
    connect to an existing cluster. Raises `ImportError` naming the extra to
    install when Ray is missing.
    """
    if "ray" not in sys.modules:
        # Read by Ray at import: a local Ray then binds to 127.0.0.1, not the machine's address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayEnvironment needs Ray: pip install 'sage-kernel[ray]'") from exc
    if ray.is_initialized():
        return
    if address is None:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


RAY_QUEUE_DEFAULTS: dict[str, Any] = {"batch_size": 4096, "buffer_timeout": 0.05, "queue_maxsize": 16384}
"""Config defaults for the "ray" transport, where every batch put or get is an actor call costing
about a millisecond of CPU on each side: batches up to 4096 packets, held up to 50 ms while their
task keeps sending (Flink's default is 100 ms; an idle task still flushes at once), and input
queues of four batches. Keys the user sets win."""


class RayEnvironment(BaseEnvironment):
    """Runs the pipeline on Ray: each task instance and each service is an actor.

    `address` as in `ensure_ray`; Ray is joined or started at `submit()`.
    The default transport is Ray queues ("ray"), with larger batches by
    default (`RAY_QUEUE_DEFAULTS`); `config={"transport": "rpc"}` uses ZeroMQ
    queues hosted by the consuming actors instead.
    """

    backend = "ray"

    def __init__(self, name: str, address: str | None = None, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        if config.get("transport") in (None, "ray"):
            config = {**RAY_QUEUE_DEFAULTS, **config}
        super().__init__(name, config)
        self.address = address

    def submit(self, autostop: bool = False) -> Any:
        ensure_ray(self.address)
        return super().submit(autostop)
