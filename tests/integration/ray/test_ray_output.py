"""What user functions print and log on Ray reaches the driver's terminal, complete when submit() returns.

Each test runs a real driver script in a subprocess (RayEnvironment there
forwards worker output, which the session's Ray does not), joined to the
session's Ray through RAY_ADDRESS, and reads its stdout and stderr.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT_TIMEOUT = 240.0
"""Seconds a driver script may run; far above what one needs (it joins a running Ray)."""

PREFIX = re.compile(r"^(?:\x1b\[\d+m)?\((?P<name>[^ ]+) pid=\d+\)(?:\x1b\[0m)? (?P<text>.*)$")

SCRIPT = textwrap.dedent("""
    import logging
    import sys

    from sage.kernel import RayEnvironment
    from sage.kernel.api.function import MapFunction

    if sys.argv[2] == "logging":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    class Loud(MapFunction):
        def execute(self, x):
            self.logger.info("info about %s", x)
            self.logger.warning("warning about %s", x)
            return x

    env = RayEnvironment("printing", config={"transport": sys.argv[1]})
    env.from_batch(list(range(40))).map(Loud).sink(print, parallelism=2)
    env.submit(autostop=True)
    print("submit returned")
""")


def run_driver(tmp_path, ray_cluster, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "printing.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT, check=False)
    assert done.returncode == 0, f"the driver failed:\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done


def forwarded(output: str) -> list[tuple[str, str]]:
    """(actor name, text) of every forwarded line of `output`."""
    return [(match["name"], match["text"]) for match in map(PREFIX.match, output.splitlines()) if match]


# Logging as the driver configured it: bare warnings without a configuration (Python's last-resort
# handler, as locally), every level and the format with one.
LOGGED = {
    "plain": ["warning about {x}"],
    "logging": ["INFO sage.kernel.user.Loud_0: info about {x}", "WARNING sage.kernel.user.Loud_0: warning about {x}"],
}


@pytest.mark.parametrize(("transport", "logging_config"), [("ray", "plain"), ("rpc", "logging")])
def test_print_and_logging_reach_the_driver_complete_before_submit_returns(tmp_path, ray_cluster, transport,
                                                                           logging_config):
    done = run_driver(tmp_path, ray_cluster, transport, logging_config)
    lines = done.stdout.splitlines()
    assert lines[-1] == "submit returned", "the actors' output was not all printed when submit() returned"
    printed = forwarded(done.stdout)
    assert len(printed) == len(lines) - 1
    # Every number once, though Ray would fold "0" from print_0 and "1" from print_1 into one
    # "[repeated 2x across cluster]" line with its de-duplication on.
    assert sorted((text for _, text in printed), key=int) == [str(x) for x in range(40)]
    assert {name for name, _ in printed} == {"print_0", "print_1"}
    assert "sage_kernel_output_end" not in done.stdout + done.stderr

    logged = collections.Counter(text for name, text in forwarded(done.stderr) if name == "Loud_0")
    assert logged == collections.Counter(line.format(x=x) for x in range(40) for line in LOGGED[logging_config])
