"""The `sage-kernel` command line.

    sage-kernel demo [--top K] [--parallelism N] [--text PATH]
        Word count over the text shipped with the package (or PATH) on the
        local backend; prints the top words and the throughput.

    sage-kernel run SCRIPT [ARGS...]
        Runs a pipeline script as `python SCRIPT ARGS...` would, then waits
        for the jobs it submitted that are still running; Ctrl-C stops them
        (they drain), a second Ctrl-C cancels them. Exit status: the
        script's own when it exits non-zero (`sys.exit(n)`) or 1 when it
        raises (its traceback is printed from its own frames on; its jobs
        are cancelled); otherwise 1 if any job it submitted failed (the
        job's error is printed), else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import threading
import time
import traceback
from importlib import resources
from typing import Any

from . import JobFailedError, LocalEnvironment
from .api.function import FlatMapFunction, SinkFunction
from .runtime.job import Job
from .runtime.job_manager import JobManager

_WORD = re.compile(r"[a-z']+")


# ---------------------------------------------------------------------- demo
class CountWords(FlatMapFunction):
    """Counts the words of its keys; emits `(word, count)` pairs once, at end of stream."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def execute(self, word: str) -> None:
        self.counts[word] = self.counts.get(word, 0) + 1

    def close(self) -> None:
        for pair in self.counts.items():
            self.collect(pair)


class Totals(SinkFunction):
    """Gathers the `(word, count)` pairs into a dict shared with the caller."""

    def __init__(self, totals: dict[str, int]) -> None:
        self.totals = totals

    def execute(self, pair: tuple[str, int]) -> None:
        word, count = pair
        self.totals[word] = count


def words_of(line: str) -> list[str]:
    return _WORD.findall(line.lower())


def read_text(path: str | None) -> tuple[str, str]:
    """(display name, text) of `path`, or of the corpus shipped with the package."""
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    return "corpus.txt (shipped with sage-kernel)", resources.files("sage.kernel.data").joinpath(
        "corpus.txt").read_text(encoding="utf-8")


def demo(top: int, parallelism: int, path: str | None) -> int:
    """Count the words of the text on the local backend; print the top `top` words and the throughput."""
    name, text = read_text(path)
    lines = text.splitlines()
    totals: dict[str, int] = {}
    env = LocalEnvironment("wordcount-demo")
    (env.from_batch(lines)
        .flatmap(words_of)
        .keyby(lambda word: word)
        .flatmap(CountWords, parallelism=parallelism)
        .sink(Totals, totals))
    started = time.perf_counter()
    job = env.submit(autostop=True)
    elapsed = time.perf_counter() - started

    words = sum(totals.values())
    print(f"sage-kernel demo: word count over {name}: {len(text):,} characters, {len(lines):,} lines")
    print(f"pipeline: from_batch -> flatmap(words_of) -> keyby(word) -> flatmap(CountWords) x{parallelism} "
          f"-> sink(Totals), {len(job.metrics())} tasks on threads")
    print(f"top {top} words:")
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:top]
    for rank, (word, count) in enumerate(ranked, 1):
        print(f"  {rank:>3}. {word:<14} {count:>8,}")
    print(f"{words:,} words ({len(totals):,} distinct) in {elapsed:.3f} s: "
          f"{words / elapsed:,.0f} words/s, {len(lines) / elapsed:,.0f} lines/s")
    return 0


# ---------------------------------------------------------------------- run
def _user_traceback(exc: BaseException, script: str | None = None) -> list[str]:
    """The exception's traceback from the user's own frames on.

    Drops the launcher's frames (this module, runpy): the traceback starts
    at the first frame of `script` when there is one, else after ours.
    """
    tb = exc.__traceback__
    if script is not None:
        entry = tb
        while entry is not None and os.path.abspath(entry.tb_frame.f_code.co_filename) != script:
            entry = entry.tb_next
        if entry is not None:
            return traceback.format_exception(type(exc), exc, entry)
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, "<frozen runpy>", runpy.__file__):
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def _wait_for_jobs(jobs: list[Job]) -> int:
    """Wait for every job to end; Ctrl-C stops them all, a second one cancels them.

    Prints the error of each failed job; returns 1 if one failed, else 0.
    """
    status = 0
    interrupted = False
    for job in jobs:
        while True:
            try:
                job.wait()
                break
            except KeyboardInterrupt:
                if interrupted:
                    print("sage-kernel: cancelling the jobs", file=sys.stderr)
                    for other in jobs:
                        other.cancel()
                else:
                    interrupted = True
                    print("sage-kernel: stopping the jobs (they drain); Ctrl-C again to cancel", file=sys.stderr)
                    for other in jobs:
                        other.stop()
            except JobFailedError as exc:
                sys.stderr.write("".join(_user_traceback(exc)))
                status = 1
                break
    return status


def run(script: str, args: list[str]) -> int:
    """Run `script` with `args` as its argv, then wait for its jobs; returns the exit status (see module docs)."""

    if not os.path.isfile(script):
        print(f"sage-kernel run: no such file: {script}", file=sys.stderr)
        return 2
    started: list[Job] = []
    lock = threading.Lock()

    def watch(job: Job, graph: Any) -> None:
        with lock:
            started.append(job)

    JobManager.add_listener(watch)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    script = os.path.abspath(script)
    sys.path.insert(0, os.path.dirname(script))
    try:
        try:
            runpy.run_path(script, run_name="__main__")
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except KeyboardInterrupt:
            status = 130
        except BaseException as exc:  # the user's error: show their traceback, not ours
            sys.stderr.write("".join(_user_traceback(exc, script)))
            status = 1
        finally:
            JobManager.remove_listener(watch)
        with lock:
            jobs = list(started)
        if status:
            # The script failed already and said why; its jobs need not run on.
            for job in jobs:
                job.cancel()
            return status
        # The script's jobs still run its code: they see its argv and path until they end.
        return _wait_for_jobs(jobs)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _exit_status(code: Any) -> int:
    """The process exit status `sys.exit(code)` means (None -> 0, int -> itself, else print and 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# ---------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage-kernel", description="sage-kernel: a Python dataflow runtime.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser("demo", help="word count over a shipped text; prints top words and throughput")
    demo_parser.add_argument("--top", type=int, default=10, help="how many words to show (default 10)")
    demo_parser.add_argument("--parallelism", type=int, default=2, help="counting instances (default 2)")
    demo_parser.add_argument("--text", metavar="PATH", help="count the words of this UTF-8 file instead")
    run_parser = commands.add_parser("run", help="run a pipeline script and wait for the jobs it submits")
    run_parser.add_argument("script", help="path of the Python script")
    run_parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sage-kernel` console script; returns the exit status."""
    options = _parser().parse_args(argv)
    if options.command == "demo":
        if options.top < 1 or options.parallelism < 1:
            print("sage-kernel demo: --top and --parallelism must be >= 1", file=sys.stderr)
            return 2
        return demo(options.top, options.parallelism, options.text)
    return run(options.script, options.args)


if __name__ == "__main__":
    sys.exit(main())
