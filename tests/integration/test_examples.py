"""Every script in examples/ runs as a reader would run it, and prints the same on Ray as locally.

Each example takes `--backend local|ray`. The local run is a plain test;
the Ray run joins the session's Ray (RAY_ADDRESS) in a subprocess of its own
and must print exactly what the local run printed on stdout (examples print
what varies from run to run, such as timings, on stderr). Ray itself may
add lines of its own to stdout, marked "(raylet)" (its worker pool's
warnings); those are not the example's output.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[2] / "examples").glob("*.py"))
RUN_TIMEOUT = 240.0
"""Seconds an example may run; far above what any of them needs."""

RAY_OWN_LINE = re.compile(r"^(\x1b\[\d+m)?\(raylet\)")


def run(example: pathlib.Path, backend: str, env: dict[str, str] | None = None) -> str:
    """The example's stdout; fails the test, showing both streams, when it exits with an error."""
    done = subprocess.run([sys.executable, str(example), "--backend", backend], cwd=example.parent,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    assert done.returncode == 0, f"{example.name} --backend {backend} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@functools.cache
def local_output(example: pathlib.Path) -> str:
    return run(example, "local")


def test_the_examples_are_found() -> None:
    assert {"wordcount.py", "service_lookup.py"} <= {example.name for example in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.stem)
def test_an_example_runs_locally(example: pathlib.Path) -> None:
    assert local_output(example).strip(), f"{example.name} printed nothing"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.stem)
def test_an_example_prints_the_same_on_ray(example: pathlib.Path, ray_cluster) -> None:
    on_ray = run(example, "ray", {"RAY_ADDRESS": ray_cluster.address_info["gcs_address"]})
    printed = "".join(line for line in on_ray.splitlines(keepends=True) if not RAY_OWN_LINE.match(line))
    assert printed == local_output(example)
