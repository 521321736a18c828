"""`sage-kernel run`: the live view in a real pseudo-terminal, Ctrl-C, plain lines when not on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
from pathlib import Path

import pexpect
import pytest

from sage.kernel.cli import main
from sage.kernel.observability.job_view import EVIDENCE_SECONDS

from .support import console_script, write_script

TIMEOUT = 30
STYLE = r"(?:\x1b\[[\d;]*m)*"
"""Terminal style codes that may sit between two words of the live view."""
BOTTLENECK = rf"Gated{STYLE} ◀ bottleneck"
BOTTLENECK_INSTANCE = rf"Gated_0{STYLE} ◀ bottleneck"

# The sink holds record 500 until a line arrives on stdin: the test decides when the job may end,
# so the live view is looked at while the job is surely half-way, without guessing a time.
GATED = """\
    import sys
    import threading

    from sage.kernel import LocalEnvironment
    from sage.kernel.api.function import SinkFunction

    gate = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), gate.set()), daemon=True).start()


    class Gated(SinkFunction):
        def __init__(self, seen):
            self.seen = seen

        def execute(self, x):
            if x == 500:
                gate.wait(60)
            self.seen.append(x)


    seen = []
    env = LocalEnvironment("gated", config={"queue_maxsize": 32, "batch_size": 8})
    env.from_batch(range(1000)).map(lambda x: x, parallelism=2).sink(Gated, seen)
    env.submit(autostop=True)
    print(f"sink saw {len(seen)} records")
    """


def spawn(*args: str) -> pexpect.spawn:
    """The console script in a pseudo-terminal of 40 x 120 characters (rich reads its size from the terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    return pexpect.spawn(console_script(), list(args), encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 120),
                         env={**env, "TERM": "xterm-256color"})


@pytest.mark.slow
def test_live_view_in_a_terminal_shows_progress_then_the_summary(tmp_path: Path) -> None:
    child = spawn("run", "--interval", "0.2", str(write_script(tmp_path, GATED)))
    # Half-way: the progress bar with its numbers and an ETA, the operator table, the bottleneck.
    child.expect(r"gated-[0-9a-f]{8}")
    child.expect("━")
    child.expect(r"\d+%\s+\d[\d,]* / 1,000 records")
    child.expect("ETA")
    child.expect(BOTTLENECK)
    child.sendline("go")
    child.expect("sink saw 1000 records")
    child.expect(r"job gated-[0-9a-f]{8}: finished in [\d.]+ s")
    child.expect(r"from_batch\s+1\s+finished\s+0\s+1,000")
    child.expect(rf"{BOTTLENECK}{STYLE}\s+1\s+finished\s+1,000\s+0")
    assert exit_status(child) == 0


@pytest.mark.slow
def test_live_view_expanded_shows_every_instance(tmp_path: Path) -> None:
    child = spawn("run", "--expand", "--interval", "0.2", str(write_script(tmp_path, GATED)))
    child.expect(r"gated-[0-9a-f]{8}")
    child.expect(r"map_0\s+1\s+running")
    child.expect(r"map_1\s+1\s+running")
    child.expect(BOTTLENECK_INSTANCE)
    child.sendline("go")
    child.expect("sink saw 1000 records")
    child.expect(r"job gated-[0-9a-f]{8}: finished in [\d.]+ s")
    child.expect(r"from_batch_0\s+1\s+finished\s+0\s+1,000")
    child.expect(r"map_0\s+1\s+finished\s+(\d+)\s+(\d+)")
    first = int(child.match.group(1))
    child.expect(r"map_1\s+1\s+finished\s+(\d+)")
    assert first + int(child.match.group(1)) == 1000  # the two instances share the records
    child.expect(rf"{BOTTLENECK_INSTANCE}{STYLE}\s+1\s+finished\s+1,000\s+0")
    assert exit_status(child) == 0


def exit_status(child: pexpect.spawn) -> int:
    """Wait for the end of the child's output; its exit status."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def stopped_half_way(tmp_path: Path) -> pexpect.spawn:
    """The gated run, once Ctrl-C was pressed while the sink held record 500 and the view said so."""
    child = spawn("run", "--interval", "0.2", str(write_script(tmp_path, GATED)))
    child.expect(BOTTLENECK)
    child.sendintr()
    child.expect("stopping the jobs")
    return child


@pytest.mark.slow
def test_ctrl_c_stops_the_job_gracefully_and_exits_130(tmp_path: Path) -> None:
    child = stopped_half_way(tmp_path)
    child.sendline("go")  # the held record goes on; what the source had sent drains, nothing is lost
    assert child.expect([r"sink saw (\d+) records", pexpect.EOF]) == 0
    seen = int(child.match.group(1))
    child.expect(r"job gated-[0-9a-f]{8}: finished")
    assert exit_status(child) == 130
    assert 500 < seen <= 1000


@pytest.mark.slow
def test_second_ctrl_c_cancels(tmp_path: Path) -> None:
    child = stopped_half_way(tmp_path)
    child.sendintr()  # the held record never goes on: only a cancel ends the job
    child.expect("cancelling the jobs")
    child.expect(r"job gated-[0-9a-f]{8}: cancelled")
    assert exit_status(child) == 130


def test_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    script = write_script(tmp_path, GATED)
    result = subprocess.run([console_script(), "run", "--interval", "0.1", str(script)], input="go\n",
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sink saw 1000 records\n"  # stdout is the script's alone
    lines = result.stderr.splitlines()
    progress = [line for line in lines if re.match(r"\[\d+:\d\d\] job gated-[0-9a-f]{8} ", line)]
    assert progress, result.stderr
    assert re.search(r" finished 100% 1,000/1,000 done \| from_batch \S+/s .*\| map×2 \S+/s .*\| Gated \S+/s",
                     progress[-1])
    assert "\x1b[" not in result.stderr  # no terminal codes in a log
    header = next(i for i, line in enumerate(lines) if re.match(r"job gated-[0-9a-f]{8}: finished in", line))
    assert lines[header + 1].split()[:5] == ["operator", "×", "status", "in", "out"]


def test_plain_lines_expanded_show_every_instance(tmp_path: Path) -> None:
    script = write_script(tmp_path, GATED)
    result = subprocess.run([console_script(), "run", "--expand", "--interval", "0.1", str(script)], input="go\n",
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sink saw 1000 records\n"
    lines = result.stderr.splitlines()
    last = [line for line in lines if re.match(r"\[\d+:\d\d\] job gated-[0-9a-f]{8} finished ", line)]
    assert len(last) == 1, result.stderr
    assert re.search(r"\| from_batch_0 \S+/s .*\| map_0 \S+/s .*\| map_1 \S+/s .*\| Gated_0 \S+/s", last[0])
    header = next(i for i, line in enumerate(lines) if re.match(r"job gated-[0-9a-f]{8}: finished in", line))
    rows = [line.split()[:3] for line in lines[header + 2:header + 6]]
    assert rows == [["from_batch_0", "1", "finished"], ["map_0", "1", "finished"], ["map_1", "1", "finished"],
                    ["Gated_0", "1", "finished"]]


# Three jobs that end in a few milliseconds each, one of them left running when the script returns.
QUICK_JOBS = """\
    from sage.kernel import LocalEnvironment

    for name in ("first", "second"):
        env = LocalEnvironment(name)
        env.from_batch(range(100)).map(lambda x: x * 2).sink(lambda x: None)
        env.submit(autostop=True)
    env = LocalEnvironment("third")
    env.from_batch(range(100)).sink(lambda x: None)
    env.submit()
    print("script done")
    """

SUMMARY_ROW = re.compile(r"^(\S+)( ◀ bottleneck)?\s+\d+\s+finished\s+[\d,]+\s+[\d,]+\s+([\d.]+) s\s")


def assert_every_job_summarised(text: str, names: tuple[str, ...]) -> None:
    """A summary table per job, with a row per operator; a row marked as the bottleneck ran a second or more."""
    for name in names:
        assert re.search(rf"^job {name}-[0-9a-f]{{8}}: finished in [\d.]+ s", text, re.M), (name, text)
    rows = [SUMMARY_ROW.match(line) for line in text.splitlines()]
    rows = [row for row in rows if row is not None]
    assert len(rows) == 3 + 3 + 2, text
    for row in rows:
        assert row.group(2) is None or float(row.group(3)) >= EVIDENCE_SECONDS, row.group(0)


def test_every_job_gets_its_summary_however_short(tmp_path: Path) -> None:
    # stdout and stderr are pipes: plain lines, then the summaries.
    result = subprocess.run([console_script(), "run", str(write_script(tmp_path, QUICK_JOBS))],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "script done\n"
    assert_every_job_summarised(result.stderr, ("first", "second", "third"))


@pytest.mark.slow
def test_every_job_gets_its_summary_when_only_stderr_is_a_terminal(tmp_path: Path) -> None:
    # stdout is a pipe, stderr a terminal: the live view, then the summaries on the terminal.
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, columns
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    try:
        process = subprocess.Popen([console_script(), "run", str(write_script(tmp_path, QUICK_JOBS))],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, text=True,
                                   env={**env, "TERM": "xterm-256color"})
    finally:
        os.close(terminal)
    chunks = []
    try:
        while select.select([controller], [], [], TIMEOUT)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal's last file
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
    out, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0
    assert out == "script done\n"
    text = re.sub(r"\x1b\[[\d;?]*[A-Za-z]", "", b"".join(chunks).decode())
    assert_every_job_summarised(text.replace("\r", ""), ("first", "second", "third"))


def test_summary_numbers_stay_whole_on_80_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # --view live into something that is not a terminal: rich draws the summary 80 columns wide.
    monkeypatch.setenv("COLUMNS", "80")
    script = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment

        def normalise_the_prices(x):
            return x

        env = LocalEnvironment("narrow")
        env.from_batch(range(1000)).map(normalise_the_prices).sink(lambda x: None)
        env.submit(autostop=True)
        """)
    assert main(["run", "--view", "live", str(script)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert max(len(line) for line in lines) <= 80
    numbers = re.compile(r" 1  finished\s+[\d,]+\s+[\d,]+\s+\d+\.\d\d s\s+\d+(?:\.\d+)?[kM]?(?:\s+\d+%){3}\s+0$")
    assert len([line for line in lines if numbers.search(line)]) == 3, "\n".join(lines)


def test_quiet_shows_nothing_but_the_scripts_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment
        env = LocalEnvironment("quiet")
        env.from_batch([1, 2, 3]).map(lambda x: x * 2).sink(print)
        env.submit(autostop=True)
        """)
    assert main(["run", "--view", "quiet", str(script)]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == ["2", "4", "6"] and captured.err == ""


def test_a_failing_function_shows_the_users_frames_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment

        def parse(x):
            return int(x)

        env = LocalEnvironment("bad-input")
        env.from_batch(["1", "x"]).map(parse).sink(print)
        env.submit(autostop=True)
        """)
    assert main(["run", "--view", "quiet", str(script)]) == 1
    err = capsys.readouterr().err
    assert f'File "{script}", line 4, in parse' in err and f'File "{script}", line 8, in <module>' in err
    assert "ValueError: invalid literal for int() with base 10: 'x'" in err
    assert "JobFailedError: job bad-input-" in err and "'parse_0'" in err
    assert "sage/kernel" not in err and "frames of sage-kernel hidden" in err
    assert main(["run", "--view", "quiet", "--full-traceback", str(script)]) == 1
    assert "sage/kernel/runtime/job.py" in capsys.readouterr().err


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write_script(tmp_path, "print('never runs')\n")
    assert main(["run", "--interval", "0", str(script)]) == 2
    assert main(["run", "--interval", "nan", str(script)]) == 2
    assert main(["run", "--interval", "inf", str(script)]) == 2
    assert main(["run", "--graph", "picture.jpeg", str(script)]) == 2
    captured = capsys.readouterr()
    assert "never runs" not in captured.out
    assert "--interval must be a finite number of seconds > 0" in captured.err
    assert ".mmd (Mermaid), .dot, .png or .svg" in captured.err
