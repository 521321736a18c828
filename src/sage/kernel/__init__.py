"""sage-kernel: a Python dataflow runtime.

Import is light: no backend (Ray, ZeroMQ) is imported until it is used;
`RayEnvironment` is imported on first access.
"""

from typing import Any

from .api.environment import LocalEnvironment
from .errors import JobFailedError, PipelineError, ServiceCallError
from .runtime.communication.router.packet import StopSignal

__all__ = ["JobFailedError", "LocalEnvironment", "PipelineError", "RayEnvironment", "ServiceCallError", "StopSignal"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "RayEnvironment":
        from .api.ray_environment import RayEnvironment

        return RayEnvironment
    raise AttributeError(f"module 'sage.kernel' has no attribute {name!r}")
