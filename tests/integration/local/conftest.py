"""Fixtures for the local backend tests (helpers live in support.py)."""

from __future__ import annotations

import pytest

from sage.kernel.runtime.job_manager import JobManager


@pytest.fixture(autouse=True)
def cancel_leftover_jobs():
    """Cancel every job a test started and left running, so a failing test leaves no busy threads."""
    before = set(JobManager.jobs)
    yield
    for job_id in set(JobManager.jobs) - before:
        job = JobManager.jobs[job_id]
        if not job.done():
            job.cancel()
