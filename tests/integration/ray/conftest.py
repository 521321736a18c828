"""Fixtures for pipelines on RayEnvironment (helpers live in ray_job_support.py; tests/conftest.py
cancels the jobs a test leaves running).

This directory has no __init__.py on purpose: a package here would be named
`ray` and hide the real one. Test modules therefore import as top-level
modules that Ray workers cannot import; they are shipped by value instead.
"""

from __future__ import annotations

import cloudpickle
import pytest
import ray_job_support


@pytest.fixture(autouse=True)
def test_ray(ray_cluster):
    """Every test here runs on the session's Ray: RayEnvironment joins it instead of starting its own."""
    return ray_cluster


@pytest.fixture(autouse=True)
def ship_test_code(request):
    """Let actors rebuild what the test module and the helpers define (functions, classes, lambdas)."""
    cloudpickle.register_pickle_by_value(request.module)
    cloudpickle.register_pickle_by_value(ray_job_support)
    return

