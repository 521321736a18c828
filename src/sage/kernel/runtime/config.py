"""Job configuration: the keys an environment's `config` dict accepts."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import PipelineError
from .communication.router import DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_TIMEOUT

TRANSPORTS = ("python", "ray", "rpc")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Settings of one job; every field can be given in the environment's `config` dict.

    - `queue_maxsize`: capacity, in packets, of every task's input queue (bounds
      memory; a full queue blocks its producers).
    - `batch_size`: packets a router coalesces per connection before one batch put.
    - `buffer_timeout`: seconds a packet may wait in a batch while its task keeps sending.
    - `transport`: "python" (threads in one process), "ray" (Ray queues), "rpc"
      (ZeroMQ queues); None picks the backend's default.
    - `service_timeout`: default seconds a service call waits for its answer.
    - `service_queue_maxsize`: capacity of each service's request queue.
    - `copy_on_fanout`: when one record goes to several consumers (broadcast,
      or one stream read by several operators), give each extra consumer its
      own copy of a mutable record (see `record_copy`); False shares it.
    - `checkpoint_interval`: seconds between consistent checkpoints; None
      (the default) takes none. Needs `checkpoint_dir`.
    - `checkpoint_dir`: directory of the checkpoint store (SQLite); a job
      submitted with a completed checkpoint of the same job name there resumes
      from it.
    - `restart_attempts`: automatic restarts after a failure, each from the
      last complete checkpoint (from the start without one); 0 fails at once.
    - `restart_delay`: seconds to wait before a restart.
    """

    queue_maxsize: int = 4096
    batch_size: int = DEFAULT_BATCH_SIZE
    buffer_timeout: float = DEFAULT_BUFFER_TIMEOUT
    transport: str | None = None
    service_timeout: float = 30.0
    service_queue_maxsize: int = 4096
    copy_on_fanout: bool = True
    checkpoint_interval: float | None = None
    checkpoint_dir: str | None = None
    restart_attempts: int = 0
    restart_delay: float = 0.5

    @property
    def checkpointing(self) -> bool:
        """True when the job takes checkpoints."""
        return self.checkpoint_interval is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobConfig:
        """Build from a user dict; unknown keys and bad values raise `PipelineError` naming them."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PipelineError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = cls(**data)
        for name in ("queue_maxsize", "batch_size", "service_queue_maxsize"):
            value = getattr(config, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PipelineError(f"config {name} must be an int >= 1, got {value!r}")
        for name in ("buffer_timeout", "service_timeout"):
            value = getattr(config, name)
            # `not 0 <= value < inf` also refuses NaN, which compares false with everything.
            if not _is_number(value) or not 0 <= value < math.inf:
                raise PipelineError(f"config {name} must be a finite number >= 0 (seconds), got {value!r}")
        if not isinstance(config.copy_on_fanout, bool):
            raise PipelineError(f"config copy_on_fanout must be True or False, got {config.copy_on_fanout!r}")
        interval = config.checkpoint_interval
        if interval is not None and (not _is_number(interval) or not 0 < interval < math.inf):
            raise PipelineError(f"config checkpoint_interval must be a finite number of seconds > 0 or None, "
                                f"got {interval!r}")
        if config.checkpoint_dir is not None and (not isinstance(config.checkpoint_dir, str) or
                                                  not config.checkpoint_dir):
            raise PipelineError(f"config checkpoint_dir must be a directory path, got {config.checkpoint_dir!r}")
        if interval is not None and config.checkpoint_dir is None:
            raise PipelineError("config checkpoint_interval needs a checkpoint_dir to keep the checkpoints in")
        if interval is None and config.checkpoint_dir is not None:
            raise PipelineError("config checkpoint_dir without a checkpoint_interval takes no checkpoints (nothing "
                                "to resume from): set checkpoint_interval (seconds) too")
        attempts = config.restart_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise PipelineError(f"config restart_attempts must be an int >= 0, got {attempts!r}")
        if not _is_number(config.restart_delay) or not 0 <= config.restart_delay < math.inf:
            raise PipelineError(f"config restart_delay must be a finite number >= 0 (seconds), "
                                f"got {config.restart_delay!r}")
        if config.transport is not None and config.transport not in TRANSPORTS:
            raise PipelineError(f"config transport must be one of {', '.join(TRANSPORTS)}, got {config.transport!r}")
        return config


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
