"""The `sage-kernel` command line: `demo`, `run` (with a live view of the jobs) and `graph`.

`sage-kernel --help` and `sage-kernel COMMAND --help` describe every
option; docs/user_guide.md and docs/observability.md explain the output.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import textwrap
import time
from importlib import resources
from typing import Any

from . import JobFailedError, LocalEnvironment
from .api.function import FlatMapFunction, SinkFunction
from .observability.graph_export import GraphvizMissing, output_format, to_dot, to_mermaid, write
from .observability.topology import Topology, topology
from .observability.user_script import ScriptRun, SubmitIntercepted, capture_submissions, format_user_exception
from .runtime.job import JobRun
from .runtime.job_manager import job_manager

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
    """(display name, text) of `path`, or of the corpus shipped with the package.

    Raises `OSError` when `path` cannot be read, `UnicodeDecodeError` when it is not UTF-8.
    """
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    return "corpus.txt (shipped with sage-kernel)", resources.files("sage.kernel.data").joinpath(
        "corpus.txt").read_text(encoding="utf-8")


def demo(top: int, parallelism: int, path: str | None) -> int:
    """Count the words of the text on the local backend; print the top `top` words and the throughput.

    Returns 0, or 2 after a one-line message when `path` cannot be read as UTF-8 text.
    """
    try:
        name, text = read_text(path)
    except FileNotFoundError:
        print(f"sage-kernel demo: no such file: {path}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"sage-kernel demo: cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sage-kernel demo: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
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
    metrics = job.metrics()
    assert isinstance(metrics, dict)
    tasks = sum(m["kind"] != "job" for m in metrics.values())
    print(f"sage-kernel demo: word count over {name}: {len(text):,} characters, {len(lines):,} lines")
    print(f"pipeline: from_batch -> flatmap(words_of) -> keyby(word) -> flatmap(CountWords) x{parallelism} "
          f"-> sink(Totals), {tasks} tasks on threads")
    print(f"top {top} words:")
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:top]
    for rank, (word, count) in enumerate(ranked, 1):
        print(f"  {rank:>3}. {word:<14} {count:>8,}")
    print(f"{words:,} words ({len(totals):,} distinct) in {elapsed:.3f} s: "
          f"{words / elapsed:,.0f} words/s, {len(lines) / elapsed:,.0f} lines/s")
    return 0


# ---------------------------------------------------------------------- run
def _view_mode(view: str) -> str:
    """The monitor mode for `--view`: "auto" is live when stderr is a terminal, else plain lines."""
    if view != "auto":
        return view
    return "live" if sys.stderr.isatty() else "plain"


def _numbered(path: str, index: int) -> str:
    """`path` for the first job, `name-2.ext` for the second and so on."""
    if index == 0:
        return path
    stem, suffix = os.path.splitext(path)
    return f"{stem}-{index + 1}{suffix}"


def _usable(script: str, outputs: list[str], command: str) -> bool:
    """Whether `script` exists and every graph output has a known suffix; says why not on stderr.

    Checked before the script runs, so a typo does not cost a whole run.
    """
    if not os.path.isfile(script):
        print(f"sage-kernel {command}: no such file: {script}", file=sys.stderr)
        return False
    try:
        for path in outputs:
            output_format(path)
    except ValueError as exc:
        print(f"sage-kernel {command}: {exc}", file=sys.stderr)
        return False
    return True


def _job_error(job: JobRun) -> JobFailedError | None:
    """The error `job.wait()` raises for a failed job (with the task's exception as its cause)."""
    try:
        job.wait(0)
    except JobFailedError as exc:
        return exc
    return None


def run(script: str, args: list[str], view: str = "auto", interval: float | None = None, expand: bool = False,
        graphs: list[str] | None = None, full_traceback: bool = False) -> int:
    """Run `script` with `args` as its argv, show its jobs until they end; returns the exit status.

    The script runs on a thread of its own; this thread shows the jobs and
    handles Ctrl-C (see `Monitor.run`). Exit status: 130 after Ctrl-C; the
    script's own when it exits non-zero or raises (1, with its traceback;
    its running jobs are cancelled); else 1 if a job it submitted failed
    (the job's error is printed), else 0.
    """
    from .observability.live_view import Monitor  # rich: loaded only for this command

    if not _usable(script, graphs or [], "run"):
        return 2
    monitor = Monitor(_view_mode(view), interval, expand)

    def script_ended() -> None:
        if script_run.exit_status:  # the script failed and says why: its jobs need not run on
            for watched in monitor.watched():
                watched.job.cancel()
        monitor.wake()

    script_run = ScriptRun(script, args, on_done=script_ended)
    job_manager().add_listener(monitor)
    try:
        script_run.start()
        monitor.run(script_run.done)
    finally:
        job_manager().remove_listener(monitor)
        script_run.restore()
    jobs = [watched.job for watched in monitor.watched()]
    if monitor.interrupted:  # gave up waiting: nothing may run on behind the user's back
        for job in jobs:
            job.cancel()
        return 130
    monitor.print_summaries()
    status = script_run.exit_status or 0
    if script_run.error is not None:
        sys.stderr.write(format_user_exception(script_run.error, full_traceback))
    elif status == 0:
        for job in jobs:
            error = _job_error(job)
            if error is not None:
                sys.stderr.write(format_user_exception(error, full_traceback))
                status = 1
    for index, watched in enumerate(monitor.watched()):
        for path in graphs or []:
            status = _write_graph(topology(watched.graph, watched.job.job_id, watched.metrics()),
                                  _numbered(path, index), expand) or status
    return 130 if monitor.presses and status == 0 else status


# ---------------------------------------------------------------------- graph
def _write_graph(topo: Topology, path: str, expand: bool) -> int:
    """Write one graph file; returns 0, or 1 after printing why it could not be written."""
    try:
        write(topo, path, expand)
    except (GraphvizMissing, RuntimeError, OSError) as exc:
        print(f"sage-kernel: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    return 0


def graph(script: str, args: list[str], outputs: list[str], text_format: str = "mermaid", expand: bool = False,
          full_traceback: bool = False) -> int:
    """Compile the first pipeline `script` submits, without running it, and write its execution graph.

    With no `outputs`, prints it to stdout as `text_format` ("mermaid" or
    "dot"). Returns 0, 1 when the script fails or submits no job or a file
    cannot be written, 2 for a bad file name or a missing script.
    """
    if not _usable(script, outputs, "graph"):
        return 2
    with capture_submissions():
        script_run = ScriptRun(script, args)
        try:
            script_run.run_here()
        finally:
            script_run.restore()
    if not isinstance(script_run.error, SubmitIntercepted):
        if script_run.error is not None:
            sys.stderr.write(format_user_exception(script_run.error, full_traceback))
            return 1
        print(f"sage-kernel graph: {script} submitted no job (env.submit() was not called)", file=sys.stderr)
        return script_run.exit_status or 1
    compiled = script_run.error.graph
    topo = topology(compiled, compiled.job_id)
    if not outputs:
        sys.stdout.write(to_dot(topo, expand) if text_format == "dot" else to_mermaid(topo, expand))
        return 0
    status = 0
    for path in outputs:
        failed = _write_graph(topo, path, expand)
        if not failed:
            print(f"sage-kernel graph: wrote {path}", file=sys.stderr)
        status = failed or status
    return status


# ---------------------------------------------------------------------- main
_RUN_EPILOG = """\
The script runs as `python SCRIPT ARGS...` would (__name__ == "__main__",
sys.argv, the script's folder on sys.path), on a thread of its own, so it
may block in env.submit(autostop=True). Every job it submits is shown until
the script has returned and its jobs have ended.

The view goes to stderr (the script's stdout stays clean). On a terminal it
is live: one row per operator (--expand: per parallel instance) with
records/s in and out over the last seconds, the share of each second spent
busy (in the function), backpressured (waiting for room downstream) and
idle (waiting for input), the fill of the input queue, and the bottleneck
marked: the busiest task (busy >= 50% of each second) that is not held
back by its downstream (backpressured < 10%), once it has run at least a
second in the last seconds (a shorter run is no evidence: nothing is
marked). A progress bar with an ETA shows when every source is a list,
tuple or range (their size is known). When stderr is not a terminal, one
line per job (--expand: per parallel instance) every --interval seconds.
At the end, a summary table per job (totals, time, average rates, shares),
for every job the script submitted, however short.

Ctrl-C once stops the jobs gracefully (sources end their streams, what was
emitted drains through the pipeline; a script waiting in submit(autostop=True)
then goes on); twice cancels them; a third time quits without waiting.

Exit status: 130 after Ctrl-C; the script's own when it calls sys.exit(n)
with n != 0; 1 when it raises (its traceback is printed without
sage-kernel's frames, and its jobs are cancelled); otherwise 1 if a job it
submitted failed (the job's error is printed), else 0.

Options go before SCRIPT: everything after SCRIPT is the script's.
"""

_GRAPH_EPILOG = """\
The script runs until its first env.submit(), which compiles the pipeline
and ends the script there: nothing runs (a RayEnvironment still connects to
or starts Ray first). The graph shows every operator with its kind and
parallelism (--expand: every parallel instance), edges labelled with their
routing strategy (hash, broadcast, round_robin; "mixed" when hash-keyed and
unkeyed records share an edge) and, on operators with several inputs, the
input number; services as hexagons, and a pipeline service linked to the
from_service source that serves it. Which functions call a service is not
written in the pipeline (call_service can be called from anywhere), so it
is known only from a run: `sage-kernel run --graph PATH SCRIPT` draws the
calls each operator made, with their counts.

Outputs (-o, repeatable) take their format from the suffix: .mmd or
.mermaid (Mermaid), .dot or .gv (Graphviz DOT text), .png and .svg
(pictures drawn by Graphviz's `dot`). Pictures need Graphviz installed:
apt-get install graphviz (Debian, Ubuntu), dnf install graphviz (Fedora),
brew install graphviz (macOS). Without -o the graph is printed to stdout
(--format).

Options go before SCRIPT: everything after SCRIPT is the script's.
"""


# ---------------------------------------------------------------------- checkpoints
def checkpoints(directory: str) -> int:
    """Print the checkpoints kept in `directory`; exit status 2 when it holds no checkpoint store."""
    from .runtime.checkpoint import CheckpointStore
    from .runtime.checkpoint.store import STORE_FILE

    if not os.path.isfile(os.path.join(directory, STORE_FILE)):
        print(f"sage-kernel checkpoints: no checkpoints in {directory} (no {STORE_FILE})", file=sys.stderr)
        return 2
    infos = CheckpointStore(directory).list()
    if not infos:
        print(f"no checkpoints in {directory}")
        return 0
    print(f"{'job':<24} {'run':>3} {'id':>6}  {'completed':<19} {'duration':>9} {'size':>10}  status")
    for info in infos:
        completed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.completed)) if info.completed else "-"
        took = f"{info.duration * 1000:.0f} ms" if info.duration is not None else "-"
        status = info.status if info.restorable or info.status == "finished" else "pending (not complete)"
        print(f"{info.job:<24} {info.run:>3} {info.checkpoint_id:>6}  {completed:<19} {took:>9} "
              f"{info.bytes:>10,}  {status}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sage-kernel", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("sage-kernel: a Python dataflow runtime. Run a pipeline script with a live view "
                                  "of its jobs, draw its execution graph, or try the word-count demo.", 79),
        epilog="Run `sage-kernel COMMAND --help` for the options of each command.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_parser = commands.add_parser(
        "demo", help="word count over a shipped text; prints top words and throughput",
        description="Count the words of a text shipped with the package (about 400 KB of generated English-like "
                    "text) on the local backend, then print the top words and the throughput.")
    demo_parser.add_argument("--top", type=int, default=10, help="how many words to show (default 10)")
    demo_parser.add_argument("--parallelism", type=int, default=2, help="counting instances (default 2)")
    demo_parser.add_argument("--text", metavar="PATH", help="count the words of this UTF-8 file instead")

    run_parser = _script_command(
        commands, "run", "run a pipeline script with a live view of its jobs",
        "Run a pipeline script and show the jobs it submits while they run: rates, busy/backpressured/idle "
        "shares, queue fill, the bottleneck, progress; a summary at the end.", _RUN_EPILOG)
    run_parser.add_argument("--view", choices=("auto", "live", "plain", "quiet"), default="auto",
                            help="live: redraw in place (rich); plain: one line per job every --interval "
                                 "seconds; quiet: nothing but errors; auto (default): live when stderr is a "
                                 "terminal, else plain")
    run_parser.add_argument("--interval", type=float, metavar="SECONDS",
                            help="seconds between refreshes (default 1 live, 5 plain)")
    run_parser.add_argument("--expand", action="store_true",
                            help="one row per parallel instance instead of one per operator")
    run_parser.add_argument("--graph", action="append", default=[], metavar="PATH",
                            help="after the run, write each job's execution graph with the service calls seen "
                                 "(suffix .mmd, .dot, .png or .svg; see `sage-kernel graph --help`; "
                                 "a second job's file is PATH-2 and so on); repeatable")
    _add_script_arguments(run_parser)

    graph_parser = _script_command(
        commands, "graph", "write a script's execution graph as Mermaid, DOT, PNG or SVG, without running it",
        "Compile the first pipeline a script submits, without running it, and write its execution graph: "
        "operators, parallel instances, edges with their routing strategy, services.", _GRAPH_EPILOG)
    graph_parser.add_argument("-o", "--output", action="append", default=[], metavar="PATH",
                              help="write to PATH, format from its suffix (.mmd, .dot, .png, .svg); repeatable")
    graph_parser.add_argument("--format", choices=("mermaid", "dot"), default="mermaid",
                              help="text format printed to stdout when no -o is given (default mermaid)")
    graph_parser.add_argument("--expand", action="store_true", help="draw every parallel instance as a node")
    _add_script_arguments(graph_parser)

    checkpoints_parser = commands.add_parser(
        "checkpoints", help="list the jobs and checkpoints kept in a checkpoint directory",
        description="List every job and checkpoint in a checkpoint directory (a job's checkpoint_dir): id, when "
                    "it completed, how long it took, its size, and whether it can be restored.")
    checkpoints_parser.add_argument("directory", help="the checkpoint directory")
    return parser


def _script_command(commands: Any, name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A subcommand that runs a user script; its epilog is printed as written."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 79), epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def _add_script_arguments(parser: argparse.ArgumentParser) -> None:
    """What `run` and `graph` both take last: the traceback option, the script and its arguments."""
    parser.add_argument("--full-traceback", action="store_true", help="show sage-kernel's own frames in tracebacks too")
    parser.add_argument("script", help="path of the Python script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sage-kernel` console script; returns the exit status."""
    options = _parser().parse_args(argv)
    if options.command == "demo":
        if options.top < 1 or options.parallelism < 1:
            print("sage-kernel demo: --top and --parallelism must be >= 1", file=sys.stderr)
            return 2
        return demo(options.top, options.parallelism, options.text)
    if options.command == "checkpoints":
        return checkpoints(options.directory)
    if options.command == "graph":
        return graph(options.script, options.args, options.output, options.format, options.expand,
                     options.full_traceback)
    if options.interval is not None and not (0 < options.interval < math.inf):  # float() also takes nan, inf
        print("sage-kernel run: --interval must be a finite number of seconds > 0", file=sys.stderr)
        return 2
    return run(options.script, options.args, options.view, options.interval, options.expand, options.graph,
               options.full_traceback)


if __name__ == "__main__":
    sys.exit(main())
