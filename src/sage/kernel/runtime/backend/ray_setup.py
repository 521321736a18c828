"""Joining or starting Ray for a job, before any module of the Ray backend imports it."""

from __future__ import annotations

import os
import sys


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
