"""What the benchmarks share: runs in fresh processes, hand-written thread pipelines timed, the machine, charts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RUN_TIMEOUT = 900.0
"""Seconds one measured run may take before it counts as hung (far above any default run)."""


RESULT = "RESULT "
"""The prefix of the line on which a worker prints its result (Ray may print lines of its own)."""


def time_threads(*stages: Callable[[], None]) -> float:
    """Seconds from starting one thread per stage (a hand-written pipeline) to the last one ending."""
    threads = [threading.Thread(target=stage) for stage in stages]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def print_result(result: dict[str, Any]) -> None:
    """What a worker does with its result: one line for `run_isolated` to find."""
    print(RESULT + json.dumps(result), flush=True)


def run_isolated(script: str, spec: dict[str, Any], timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Run `script --worker SPEC` in a new interpreter and return the result it printed (`print_result`).

    Every measurement gets its own process, so no run inherits another's heap,
    threads, garbage or warm caches. Raises `RuntimeError` with the child's
    stderr when it fails, and `subprocess.TimeoutExpired` after `timeout` seconds.
    """
    done = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run {spec} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    results = [line[len(RESULT):] for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if not results:
        raise RuntimeError(f"run {spec} printed no result:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(results[-1])


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Where a run happened: CPU, cores, memory, OS, Python, the packages measured, and the commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "os": platform.platform(),
        "python": platform.python_version(), "sage_kernel": package_version("sage-kernel"), "commit": commit,
        "bytewax": package_version("bytewax"), "ray": package_version("ray"), "pyzmq": package_version("pyzmq"),
        "load_average": load_average(),
    }


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages (runnable processes; 2 means two busy cores here)."""
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def describe(info: dict[str, Any]) -> str:
    """One line naming the machine of `machine()`."""
    parts = [f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB", f"Python {info['python']}",
             f"sage-kernel {info['sage_kernel']} ({info['commit']})"]
    parts += [f"{name} {info[name]}" for name in ("bytewax", "ray", "pyzmq") if info.get(name)]
    return "; ".join(parts)


def pyplot() -> Any:
    """matplotlib.pyplot with a file-only backend, or None (with a message) when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed, so no chart is drawn: pip install -e '.[bench]'", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def human(rate: float) -> str:
    """A rate in a few characters: 2.1M, 350k, 950."""
    if rate >= 1e6:
        return f"{rate / 1e6:.1f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.0f}k"
    return f"{rate:.0f}"
