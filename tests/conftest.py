"""Session-wide test fixtures: `ray_cluster`, and `cancel_leftover_jobs` for every test.

`ray_cluster` starts ONE local Ray instance for the whole test session, on the first
test that asks for it, and shuts it down when the session ends. Use it in every test
that needs Ray (mark such tests `@pytest.mark.ray`):

    @pytest.mark.ray
    def test_something(ray_cluster):
        ...  # ray.init() has run; the fixture's value is ray.init()'s context

Starting Ray costs about 5 s here, so never call `ray.init()` or `ray.shutdown()` in a
test: share this instance. What it guarantees:

- a new local instance (`address="local"`), never a cluster that happens to run on
  the machine;
- bound to 127.0.0.1 only: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (set below, before
  Ray is imported) makes Ray 2.60 take the loopback address for the node and every
  server it starts; the fixture checks the node address and fails loudly otherwise;
- 16 logical CPUs, so a dozen small actors fit on a 2-core machine; no dashboard;
  worker output is not forwarded to the driver (read /tmp/ray/session_latest/logs);
- workers inherit the environment, so actors run with the same settings.

Tests share the instance, so clean up what they create: kill their actors, and
call `shutdown_ray_queues(namespace)` for the Ray queues of a namespace they made
(use a unique namespace per test).
"""

from __future__ import annotations

import ipaddress
import os

import pytest

# Read by Ray when it is imported (ray_constants.ENABLE_RAY_CLUSTER): must be set first.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Ray's driver may replace builtins.print with its tqdm-safe wrapper; tests that name
# operators after their callable (`.sink(print)` -> "print_0") need the real one.
os.environ["RAY_TQDM_PATCH_PRINT"] = "0"

RAY_NUM_CPUS = 16


def _is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray bound to 127.0.0.1, shared by the whole session (value: ray.init()'s context)."""
    import ray
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        pytest.fail(
            "Ray was imported before tests/conftest.py set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, "
            "so it would bind to the machine's network address; find what imported it first"
        )
    if ray.is_initialized():
        pytest.fail("Ray is already initialized: tests must use the ray_cluster fixture, not ray.init()")
    context = ray.init(
        address="local",
        num_cpus=RAY_NUM_CPUS,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        hosts = {context.address_info["node_ip_address"]}
        hosts |= {node["NodeManagerAddress"] for node in ray.nodes()}
        hosts.add(context.address_info["gcs_address"].rsplit(":", 1)[0])
        exposed = sorted(h for h in hosts if not _is_loopback(h))
        if exposed:
            pytest.fail(f"the test Ray is reachable on non-loopback address(es) {exposed}; expected 127.0.0.1 only")
        yield context
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def cancel_leftover_jobs():
    """Cancel every job a test started and left running, so a failing test leaves no busy threads or actors."""
    from sage.kernel.runtime.job_manager import job_manager

    before = {job.job_id for job in job_manager().running_jobs()}
    yield
    for job in job_manager().running_jobs():
        if job.job_id not in before:
            job.cancel()
