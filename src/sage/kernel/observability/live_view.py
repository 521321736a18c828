"""The command line's view of the jobs a script runs: live (rich), plain lines, and a summary at the end.

`Monitor` is fed jobs as they are submitted (it is a `JobListener` of the
job manager) and, on the main thread, shows them until the script and its jobs
have ended (`run`), turning Ctrl-C into a graceful stop, then a cancel.
Everything goes to one stream (stderr by default), so the script's own
output on stdout stays clean for pipes and files.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..runtime.graph import ExecutionGraph
from ..runtime.job import JobRun
from ..runtime.job_manager import JobListener
from .job_view import AsyncRow, Progress, Row, async_rows, operator_rows, progress, recovery_note, service_rows
from .rates import RateWindow, lifetime
from .waker import Waker, catch_ctrl_c

MODES = ("live", "plain", "quiet")
SOURCE_KINDS = ("source", "batch")
LIVE_INTERVAL = 1.0
"""Default seconds between two refreshes of the live view."""
PLAIN_INTERVAL = 5.0
"""Default seconds between two plain lines (logs stay short)."""
PLAIN_WIDTH = 120
"""Width of tables written to something that is not a terminal."""

LEGEND = ("busy: share of each second in the function · backpr.: waiting for room downstream · "
          "idle: waiting for input · queue: input queue fill · ◀ bottleneck: the busiest task that "
          "is not held back by its downstream, once it has run a second")


@dataclasses.dataclass
class WatchedJob:
    """A job the monitor shows, with its graph and when it started and ended (monotonic seconds)."""

    job: JobRun
    graph: ExecutionGraph
    started: float
    ended: float | None = None
    rates: RateWindow = dataclasses.field(default_factory=RateWindow)

    def elapsed(self, now: float) -> float:
        return (self.ended or now) - self.started

    def metrics(self) -> dict[str, dict[str, Any]]:
        """The job's instance counters with rates and shares over the last seconds (see `RateWindow`)."""
        return self.rates.annotate(self.job.instance_metrics())


# ---------------------------------------------------------------------- formatting
def rate(value: float | None) -> str:
    """Records per second, short: 950, 41.0k, 1.20M; '–' when unknown."""
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def duration(seconds: float | None) -> str:
    """h:mm:ss, or m:ss under an hour; '–' when unknown."""
    if seconds is None:
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def latency(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _styled_share(value: float | None, warn: str) -> Text:
    style = (f"bold {warn}" if value >= 0.8 else warn) if value is not None and value >= 0.5 else ""
    return Text(share(value), style=style)


def _progress_text(p: Progress) -> str:
    eta = "done" if p.finished else f"ETA {duration(p.eta_seconds)}"
    return f"{p.fraction:4.0%}  {p.done:,} / {p.total:,} records  {rate(p.rate)} rec/s  {eta}"


# ---------------------------------------------------------------------- live view
def operator_table(rows: list[Row], title: str | None = None, summary: bool = False) -> Table:
    """The per-operator table: rates (over the last seconds, or averages in a summary) and shares."""
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    # On a narrow terminal the operator's name wraps; a number never does (nor is it cut short).
    table.add_column("operator", overflow="fold")
    numbers = ["in", "out", "time", "avg/s"] if summary else ["in/s", "out/s"]
    numbers += ["busy", "backpr.", "idle"] + ([] if summary else ["queue"]) + ["errors"]
    table.add_column("×", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        name = Text(row.name)
        if row.fed_back:
            name.append(f" ↺ {row.fed_back:,} fed back", style="cyan")
        if row.bottleneck:
            name.append(" ◀ bottleneck", style="bold red")
        cells: list[Any] = [name, str(row.instances), row.status]
        if summary:
            # One average: records taken per second (emitted, for a source, which takes none).
            cells += [f"{row.records_in:,}", f"{row.records_out:,}", f"{row.elapsed:.2f} s",
                      rate(row.out_rate if row.kind in SOURCE_KINDS else row.in_rate)]
        else:
            # A source takes no input and a sink emits nothing: a dash, not a rate of zero.
            cells += [rate(None if row.kind in SOURCE_KINDS else row.in_rate),
                      rate(None if row.kind == "sink" else row.out_rate)]
        cells += [_styled_share(row.busy, "red"), _styled_share(row.backpressure, "yellow"), share(row.idle)]
        if not summary:
            cells.append(_styled_share(row.queue_load, "yellow"))
        cells.append(Text(f"{row.errors:,}", style="red" if row.errors else ""))
        table.add_row(*cells)
    return table


def async_table(rows: list[AsyncRow]) -> Table | None:
    """The calls of each async operator: in flight out of capacity, outcomes, waits and latency; None without."""
    if not rows:
        return None
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("async calls", overflow="fold")
    for column in ("in flight", "done", "failed", "retried", "timed out", "rate waits", "p50", "p99"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row.name, f"{row.in_flight:,}/{row.capacity:,}", f"{row.completed:,}",
                      Text(f"{row.failed:,}", style="red" if row.failed else ""), f"{row.retried:,}",
                      f"{row.timed_out:,}", f"{row.rate_limited_waits:,}", latency(row.latency_p50),
                      latency(row.latency_p99))
    return table


def service_table(graph: ExecutionGraph, metrics: dict[str, dict[str, Any]], summary: bool = False) -> Table | None:
    """Calls, errors, latency and callers of each service object; None when the job has none."""
    rows = service_rows(metrics, graph)
    if not rows:
        return None
    table = Table(box=None, header_style="bold", pad_edge=False)
    batching = any(row.batch_mean is not None for row in rows)
    columns = (["service", "status", "calls"] + ([] if summary else ["calls/s"]) + ["errors", "p50", "p99"]
               + (["batch", "batch wait p99"] if batching else []) + ["callers"])
    for column in columns:  # as in the operator table: names may wrap, numbers may not
        if column in ("service", "callers"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="left" if column == "status" else "right", no_wrap=True)
    for row in rows:
        callers = ", ".join(f"{name} ({count:,})" for name, count in sorted(row.callers.items())) or "–"
        cells = [row.name, row.status, f"{row.calls:,}"] + ([] if summary else [rate(row.calls_per_second)])
        cells += [f"{row.errors:,}", latency(row.latency_p50), latency(row.latency_p99)]
        if batching:
            cells += ["–" if row.batch_mean is None else f"{row.batch_mean:.1f}", latency(row.batch_wait_p99)]
        table.add_row(*cells, callers)
    return table


def job_panel(watched: WatchedJob, metrics: dict[str, dict[str, Any]], expand: bool, now: float) -> RenderableType:
    """What the live view shows of one job: a header, a progress bar when the size is known, the tables."""
    job = watched.job
    recovery = recovery_note(metrics)
    parts: list[RenderableType] = [Text.assemble(
        ("job ", "bold"), (job.job_id, "bold cyan"), f" · {job.status} · {duration(watched.elapsed(now))}",
        f" · {recovery}" if recovery else "")]
    p = progress(watched.graph, metrics)
    if p is not None:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=p.total or 1, completed=p.total * p.fraction, width=30), _progress_text(p))
        parts.append(bar)
    parts.append(operator_table(operator_rows(watched.graph, metrics, expand)))
    calls = async_table(async_rows(watched.graph, metrics, expand))
    if calls is not None:
        parts.append(calls)
    services = service_table(watched.graph, metrics)
    if services is not None:
        parts.append(services)
    return Group(*parts)


def summary(watched: WatchedJob, expand: bool, now: float) -> RenderableType:
    """The end-of-run table of one job: totals, time, average rates and shares over each task's life."""
    job = watched.job
    metrics = lifetime(job.instance_metrics())
    recovery = recovery_note(metrics)
    title = f"job {job.job_id}: {job.status} in {watched.elapsed(now):.2f} s" + (f" · {recovery}" if recovery else "")
    parts: list[RenderableType] = [
        operator_table(operator_rows(watched.graph, metrics, expand, running_only=False), title, summary=True)]
    calls = async_table(async_rows(watched.graph, metrics, expand))
    if calls is not None:
        parts.append(calls)
    services = service_table(watched.graph, metrics, summary=True)
    if services is not None:
        parts.append(services)
    return Group(*parts)


def plain_line(watched: WatchedJob, metrics: dict[str, dict[str, Any]], now: float, expand: bool = False) -> str:
    """One line for a log: progress, then per operator (per instance with `expand`) its rates, notable shares
    and queue load."""
    job = watched.job
    line = f"[{duration(watched.elapsed(now))}] job {job.job_id} {job.status}"
    recovery = recovery_note(metrics)
    if recovery:
        line += f" ({recovery})"
    p = progress(watched.graph, metrics)
    if p is not None:
        eta = "done" if p.finished else f"ETA {duration(p.eta_seconds)}"
        line += f" {p.fraction:.0%} {p.done:,}/{p.total:,} {eta}"
    bottleneck = None
    for row in operator_rows(watched.graph, metrics, expand):
        name = row.name + (f"×{row.instances}" if row.instances > 1 else "")
        parts = [name, f"{rate(row.out_rate if row.kind in SOURCE_KINDS else row.in_rate)}/s"]
        parts += [f"{label} {share(value)}" for label, value in
                  (("busy", row.busy), ("bp", row.backpressure), ("q", row.queue_load)) if value]
        line += " | " + " ".join(parts)
        bottleneck = row.name if row.bottleneck else bottleneck
    if bottleneck is not None:
        line += f" | bottleneck: {bottleneck}"
    return line


# ---------------------------------------------------------------------- the loop
class Monitor(JobListener):
    """Shows the jobs of one script run and handles Ctrl-C for them.

    `mode` is "live" (a rich display refreshed every `interval` seconds),
    "plain" (one line per running job every `interval` seconds) or "quiet"
    (nothing until the end). `run()` blocks on the main thread until the
    script and every job it submitted have ended.
    """

    def __init__(self, mode: str, interval: float | None = None, expand: bool = False,
                 stream: IO[str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.interval = interval or (LIVE_INTERVAL if mode == "live" else PLAIN_INTERVAL)
        self.expand = expand
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, width=None if mode == "live" else PLAIN_WIDTH)
        self.jobs: list[WatchedJob] = []
        self.presses = 0
        """Times Ctrl-C was pressed during `run()`."""
        self.interrupted = False
        """True when `run()` gave up waiting (Ctrl-C a third time, or while no job ran)."""
        self._lock = threading.Lock()
        self._waker = Waker()

    # called from the script's thread (as a job listener) and from job callbacks
    def submitted(self, job: JobRun, graph: ExecutionGraph) -> None:
        """Show `job` from now on (the job manager calls this for every job the script submits)."""
        watched = WatchedJob(job, graph, time.monotonic())
        with self._lock:
            self.jobs.append(watched)
        job.add_done_callback(lambda _job: self._ended(watched))
        self.wake()

    def _ended(self, watched: WatchedJob) -> None:
        watched.ended = time.monotonic()
        self.wake()

    def wake(self) -> None:
        """Refresh now rather than at the next interval (a job or the script ended). Any thread."""
        self._waker.wake()

    def _pressed(self) -> None:
        # In the SIGINT handler: count and wake, nothing that could block.
        self.presses += 1
        self._waker.wake()

    def watched(self) -> list[WatchedJob]:
        """The jobs shown so far (a snapshot; safe from any thread)."""
        with self._lock:
            return list(self.jobs)

    # on the main thread
    def run(self, script_done: threading.Event) -> None:
        """Show the jobs until `script_done` is set and every job has ended; then release the monitor.

        Ctrl-C once: running jobs stop gracefully (sources end, everything
        in flight drains); twice: they are cancelled; a third time, or a
        first one while no job runs: give up waiting (`interrupted` is True).
        Ctrl-C is handled this way only when `run` is called on the main
        thread (elsewhere it is not delivered to this thread anyway).
        """
        live = Live(console=self.console, auto_refresh=False, transient=True,
                    redirect_stdout=sys.stdout.isatty(), redirect_stderr=True) if self.mode == "live" else None
        reported: set[str] = set()
        handled = 0
        with catch_ctrl_c(self._pressed):
            if live is not None:
                live.start()
            try:
                while True:
                    if self.presses > handled:
                        handled += 1
                        if not self._interrupt(handled):
                            self.interrupted = True
                            return
                        continue
                    if script_done.is_set() and all(w.job.done() for w in self.watched()):
                        self._show(live, reported)  # every job's last state, once
                        return
                    self._waker.wait(self.interval)
                    self._show(live, reported)
            finally:
                if live is not None:
                    live.stop()
                self._waker.close()

    def _interrupt(self, presses: int) -> bool:
        """Act on the `presses`-th Ctrl-C; False when the monitor should give up waiting."""
        running = [w.job for w in self.watched() if not w.job.done()]
        if presses == 1 and running:
            self.console.print("sage-kernel: stopping the jobs (sources end, the rest drains); "
                               "Ctrl-C again to cancel", style="yellow", highlight=False)
            for job in running:
                job.stop()
            return True
        if presses == 2 and running:
            self.console.print("sage-kernel: cancelling the jobs; Ctrl-C again to quit without waiting",
                               style="yellow", highlight=False)
            for job in running:
                job.cancel()
            return True
        self.console.print("sage-kernel: interrupted", style="yellow", highlight=False)
        return False

    def _show(self, live: Live | None, reported: set[str]) -> None:
        now = time.monotonic()
        watched = self.watched()
        if live is not None:
            panels = [job_panel(w, w.metrics(), self.expand, now) for w in watched]
            live.update(Group(*panels, Text(LEGEND, style="dim")) if panels else Text("waiting for a job…"),
                        refresh=True)
        elif self.mode == "plain":
            for w in watched:
                if w.job.job_id in reported:
                    continue
                if w.job.done():
                    reported.add(w.job.job_id)
                print(plain_line(w, w.metrics(), now, self.expand), file=self.stream, flush=True)

    def print_summaries(self) -> None:
        """The summary table of every job, once they have ended (not in quiet mode)."""
        if self.mode == "quiet":
            return
        now = time.monotonic()
        for w in self.watched():
            self.console.print(summary(w, self.expand, now))
