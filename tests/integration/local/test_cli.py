"""The `sage-kernel` command line (`demo`, `run`) and the examples it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sage.kernel.cli import main

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def sage_kernel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `sage-kernel` console script (the one next to this Python)."""
    script = Path(sys.executable).with_name("sage-kernel")
    command = str(script) if script.exists() else shutil.which("sage-kernel")
    assert command, "the sage-kernel console script is not installed (pip install -e .)"
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def write_script(tmp_path: Path, body: str, name: str = "pipeline.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_demo_prints_top_words_and_throughput() -> None:
    result = sage_kernel("demo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "top 10 words:" in lines
    top = lines[lines.index("top 10 words:") + 1 :][:10]
    assert top[0].split()[:2] == ["1.", "the"]
    counts = [int(line.split()[2].replace(",", "")) for line in top]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0
    assert "words/s" in lines[-1] and "lines/s" in lines[-1]


def test_demo_on_a_given_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "t.txt"
    text.write_text("b a c b\nA b, c!\n", encoding="utf-8")
    assert main(["demo", "--text", str(text), "--top", "2", "--parallelism", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    top = out[out.index("top 2 words:") + 1 :][:2]
    assert [line.split()[1:] for line in top] == [["b", "3"], ["a", "2"]]
    assert out[-1].startswith("7 words (3 distinct)")


def test_demo_on_a_missing_text_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.txt"
    result = sage_kernel("demo", "--text", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"sage-kernel demo: no such file: {missing}\n"
    assert result.stdout == ""


def test_demo_on_an_unreadable_text_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"ok \xff\xfe")
    assert main(["demo", "--text", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err == f"sage-kernel demo: cannot read {binary}: not UTF-8 text (invalid start byte at byte 3)\n"
    assert main(["demo", "--text", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"sage-kernel demo: cannot read {tmp_path}: Is a directory\n"


def test_run_executes_a_user_script_with_its_arguments() -> None:
    result = sage_kernel("run", str(EXAMPLES / "wordcount.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the\t8", "river\t4", "stone\t3", "a\t2", "and\t1", "29 words, 16 distinct"]


def test_run_shows_the_users_traceback_and_exits_1(tmp_path: Path) -> None:
    script = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment

        def check(x):
            if x == 2:
                raise ValueError("two is not allowed")
            return x

        def build():
            env = LocalEnvironment("failing")
            env.from_batch([1, 2, 3]).map(check).sink(print)
            env.submit(autostop=True)

        build()
        """)
    result = sage_kernel("run", str(script))
    assert result.returncode == 1
    err = result.stderr
    assert 'raise ValueError("two is not allowed")' in err and "ValueError: two is not allowed" in err
    assert "JobFailedError" in err and "'check_0'" in err
    assert f'File "{script}", line 13, in <module>' in err  # the user's own frames, from the top
    assert "runpy" not in err and "cli.py" not in err


def test_run_propagates_the_exit_status_and_an_exception_before_any_job(tmp_path: Path) -> None:
    assert main(["run", str(write_script(tmp_path, "import sys\nsys.exit(3)\n"))]) == 3
    assert main(["run", str(write_script(tmp_path, "import sys\nsys.exit()\n"))]) == 0
    assert main(["run", str(tmp_path / "missing.py")]) == 2


def test_run_waits_for_jobs_the_script_left_running(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = write_script(tmp_path, """\
        import sys
        from sage.kernel import LocalEnvironment

        def slow_square(x):
            sum(range(2000))
            return x * x

        path, n = sys.argv[1], int(sys.argv[2])
        env = LocalEnvironment("left-running")
        env.from_batch(range(n)).map(slow_square).sink(lambda x: open(path, "a").write(f"{x}\\n"))
        env.submit()  # no autostop: the script ends while the job runs
        """)
    assert main(["run", str(script), str(out), "500"]) == 0
    assert sorted(int(x) for x in out.read_text().split()) == [x * x for x in range(500)]


def test_run_reports_a_job_that_fails_after_the_script_ended(tmp_path: Path, capsys) -> None:
    script = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment

        def explode(x):
            raise RuntimeError(f"late failure on {x}")

        env = LocalEnvironment("late-failure")
        env.from_batch([1]).sink(explode)
        env.submit()
        """)
    assert main(["run", str(script)]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: late failure on 1" in err and "'explode_0'" in err


@pytest.mark.parametrize(("example", "expected"), [
    ("comap_two_sources.py", ["north: 100 readings, mean 14.95 C", "south: 10 readings, mean 13.06 C"]),
    ("keyed_join.py", ["ada\tlamp", "ada\tnotebook", "edsger\tsemaphore", "grace\tcompiler", "grace\tmoth"]),
])
def test_examples(example: str, expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / example)]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_wordcount_example_on_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "words.txt"
    text.write_text("x y x\nz x y\n", encoding="utf-8")
    assert main(["run", str(EXAMPLES / "wordcount.py"), str(text)]) == 0
    assert capsys.readouterr().out.splitlines() == ["x\t3", "y\t2", "z\t1", "6 words, 3 distinct"]
    assert os.path.basename(sys.argv[0]) != "wordcount.py"  # run restored the launcher's argv
