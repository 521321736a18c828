"""Joining or starting Ray for a job, before any module of the Ray backend imports it."""

from __future__ import annotations

import os
import sys

RAY_IMPORT_DEFAULTS = {
    # A local Ray then binds to 127.0.0.1, not the machine's network address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Worker output reaches the driver line for line: parallel instances printing the same
    # line (the same record) would otherwise be folded into "[repeated Nx across cluster]".
    "RAY_DEDUP_LOGS": "0",
}
"""Environment variables Ray reads when it is imported; set here unless the user set them."""

RAY_DRIVER_DEFAULTS = {
    # On the first forwarded line Ray would replace builtins.print in the driver with its
    # tqdm-safe wrapper; `.sink(print)` declared before that would then no longer pickle.
    "RAY_TQDM_PATCH_PRINT": "0",
}
"""Environment variables Ray reads in the driver while it runs; set here unless the user set them."""


def ensure_ray(address: str | None) -> None:
    """Join the running Ray, connect to `address`, or start a local Ray bound to 127.0.0.1.

    `address=None`: use Ray if `ray.is_initialized()`; else connect to
    `RAY_ADDRESS` when that is set (as `ray job submit` does for its
    entrypoint), else start a local instance on the loopback address only.
    "auto", "host:port" or "ray://host:port" connect to an existing cluster.
    Output of the workers (their `print` and logging) is forwarded to this
    process's stdout and stderr. Blocks while Ray starts or connects;
    raises `ImportError` naming the extra to install when Ray is missing,
    and Ray's own `ConnectionError` when there is no cluster at `address`.
    """
    if "ray" not in sys.modules:
        for name, value in RAY_IMPORT_DEFAULTS.items():
            os.environ.setdefault(name, value)
    for name, value in RAY_DRIVER_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayEnvironment needs Ray: pip install 'sage-kernel[ray]'") from exc
    if ray.is_initialized():
        return
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address is None:
        ray.init(address="local", include_dashboard=False, log_to_driver=True)
    else:
        ray.init(address=address, log_to_driver=True)
