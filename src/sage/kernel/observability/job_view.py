"""What the command line shows of a job, as plain data: operator rows, the bottleneck, the progress.

Built from one `job.metrics()` call and the job's `ExecutionGraph`; no
terminal code here (see `live_view` for the rendering).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..runtime.graph import ExecutionGraph

BUSY_MIN = 0.5
"""An instance busy less than this share of each second is not a bottleneck candidate."""

BACKPRESSURE_MAX = 0.1
"""An instance backpressured at least this share of each second is held back by its downstream."""

EVIDENCE_SECONDS = 1.0
"""An instance that ran less than this in the rate window (or, for a summary, in its whole life) is not a
bottleneck candidate: its shares describe a moment (starting up, a burst), not how the job runs."""


@dataclasses.dataclass
class Row:
    """One operator (its instances folded) or one instance: counters, rates and shares.

    Shares are the mean over the instances that ran during the rate window
    (None when none did); `queue_load` is the fullest instance's input queue
    (None for a source or once the instances ended).
    """

    name: str
    kind: str
    instances: int
    status: str
    records_in: int = 0
    records_out: int = 0
    errors: int = 0
    in_rate: float | None = None
    out_rate: float | None = None
    busy: float | None = None
    idle: float | None = None
    backpressure: float | None = None
    queue_load: float | None = None
    elapsed: float = 0.0
    bottleneck: bool = False
    fed_back: int = 0
    """Records sent back round a feedback loop (by the operator that fills a future)."""


@dataclasses.dataclass
class Progress:
    """Records the bounded sources have emitted out of their known total, and how fast."""

    done: int
    total: int
    rate: float | None
    finished: bool

    @property
    def fraction(self) -> float:
        return 1.0 if self.finished or not self.total else min(1.0, self.done / self.total)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the sources are through at the current rate; None when unknown."""
        if self.finished:
            return 0.0
        if not self.rate:
            return None
        return max(0, self.total - self.done) / self.rate


@dataclasses.dataclass
class ServiceRow:
    """One service: calls and latency, and which operators called it (from run time)."""

    name: str
    status: str
    calls: int
    errors: int
    calls_per_second: float | None
    latency_p50: float | None
    latency_p99: float | None
    callers: dict[str, int]
    batch_mean: float | None = None
    """Requests per call of its batched methods (None: it has none, or none ran yet)."""
    batch_wait_p99: float | None = None
    """The longest p99 over its batched methods of the wait for a batch to start (seconds)."""


@dataclasses.dataclass
class AsyncRow:
    """The calls of one async operator (`map_async`, `flatmap_async`), its instances folded (or one instance).

    Counts and capacity are summed over the instances; the latencies are the
    slowest instance's.
    """

    name: str
    capacity: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    timed_out: int = 0
    rate_limited_waits: int = 0
    latency_p50: float | None = None
    latency_p99: float | None = None


def find_bottleneck(metrics: dict[str, dict[str, Any]], running_only: bool = True) -> str | None:
    """The task instance that limits the job's throughput, or None.

    The rule (as Flink's back-pressure monitoring reads it): a task whose
    output is blocked (backpressured) waits for a slower one downstream, so
    the bottleneck is the busiest instance that ran at least
    `EVIDENCE_SECONDS` in the rate window (`window_running_seconds`), was
    busy at least `BUSY_MIN` of that time and backpressured less than
    `BACKPRESSURE_MAX` of it. Without that much evidence nothing is named:
    an instance that ran for a few milliseconds is "100% busy" whatever the
    job's real limit is. Only running instances count, unless
    `running_only` is False (shares over whole lives, for a summary).
    """
    best, best_busy = None, BUSY_MIN
    for name, m in metrics.items():
        busy, backpressure = m.get("busy_share"), m.get("backpressure_share")
        if m.get("kind") in ("service", "job") or busy is None or (running_only and m.get("status") != "running"):
            continue
        if (m.get("window_running_seconds") or 0.0) < EVIDENCE_SECONDS:
            continue
        if busy >= best_busy and (backpressure or 0.0) < BACKPRESSURE_MAX:
            best, best_busy = name, busy
    return best


def operator_rows(graph: ExecutionGraph, metrics: dict[str, dict[str, Any]], expand: bool = False,
                  running_only: bool = True) -> list[Row]:
    """One row per operator, in pipeline order (per instance with `expand`), bottleneck marked
    (see `find_bottleneck`)."""
    bottleneck = find_bottleneck(metrics, running_only)
    rows = []
    for transformation in graph.transformations:
        if transformation.kind == "future":
            continue  # runs no task: its records are the filler's, counted as fed back there
        nodes = [node for node in graph.by_transformation[id(transformation)] if node.name in metrics]
        if expand:
            rows += [_fold(node.name, transformation.kind, [metrics[node.name]], node.name == bottleneck)
                     for node in nodes]
        else:
            rows.append(_fold(transformation.basename, transformation.kind, [metrics[node.name] for node in nodes],
                              any(node.name == bottleneck for node in nodes),
                              len(graph.by_transformation[id(transformation)])))
    return rows


def _fold(name: str, kind: str, found: list[dict[str, Any]], bottleneck: bool, instances: int = 1) -> Row:
    row = Row(name, kind, instances, _status([m.get("status", "created") for m in found] or ["created"]),
              bottleneck=bottleneck)
    for m in found:
        row.records_in += m.get("records_in", 0)
        row.records_out += m.get("records_out", 0)
        row.errors += m.get("errors", 0)
        row.fed_back += m.get("fed_back", 0)
        row.elapsed = max(row.elapsed, m.get("elapsed_seconds", 0.0))
    row.in_rate = _sum(m.get("records_in_per_second") for m in found)
    row.out_rate = _sum(m.get("records_out_per_second") for m in found)
    row.busy = _mean(m.get("busy_share") for m in found)
    row.idle = _mean(m.get("idle_share") for m in found)
    row.backpressure = _mean(m.get("backpressure_share") for m in found)
    loads = [m["input_queue_load"] for m in found if m.get("input_queue_load") is not None]
    row.queue_load = max(loads) if loads else None
    return row


def async_rows(graph: ExecutionGraph, metrics: dict[str, dict[str, Any]], expand: bool = False) -> list[AsyncRow]:
    """One row per async operator (per instance with `expand`), in pipeline order; none for a job without."""
    rows = []
    for transformation in graph.transformations:
        nodes = [node for node in graph.by_transformation.get(id(transformation), [])
                 if metrics.get(node.name, {}).get("async")]
        groups = [[node] for node in nodes] if expand else [nodes] if nodes else []
        for group in groups:
            row = AsyncRow(group[0].name if expand else transformation.basename)
            for node in group:
                calls = metrics[node.name]["async"]
                for counter in ("capacity", "in_flight", "completed", "failed", "retried", "timed_out",
                                "rate_limited_waits"):
                    setattr(row, counter, getattr(row, counter) + calls.get(counter, 0))
                row.latency_p50 = _worst(row.latency_p50, calls.get("latency_p50"))
                row.latency_p99 = _worst(row.latency_p99, calls.get("latency_p99"))
            rows.append(row)
    return rows


def _worst(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _status(statuses: list[str]) -> str:
    distinct = set(statuses)
    if len(distinct) == 1:
        return statuses[0]
    for status in ("failed", "cancelled"):
        if status in distinct:
            return status
    running = statuses.count("running")
    return f"{running}/{len(statuses)} running" if running else "starting"


def _sum(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _mean(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def progress(graph: ExecutionGraph, metrics: dict[str, dict[str, Any]]) -> Progress | None:
    """Progress of the job's sources, when every one of them is bounded with a known size (`bounded_size`).

    Counts what the sources have emitted: the records still in queues
    downstream (at most one queue's capacity per task) are not through yet.
    None for a job with an unbounded source or a source of unknown size
    (a generator, a BatchFunction). A service pipeline's source does not count.
    """
    sources = [t for t in graph.transformations if t.is_source and not t.detached]
    if not sources or any(t.bounded_size is None for t in sources):
        return None
    done, rate, finished = 0, None, True
    for t in sources:
        for node in graph.by_transformation[id(t)]:
            m = metrics.get(node.name, {})
            done += m.get("records_out", 0)
            if m.get("records_out_per_second") is not None:
                rate = (rate or 0.0) + m["records_out_per_second"]
            finished = finished and m.get("status") == "finished"
    total = sum(t.bounded_size or 0 for t in sources)
    return Progress(done, total, rate, finished)


def recovery_note(metrics: dict[str, dict[str, Any]]) -> str:
    """Restarts and the last checkpoint, in a few words ("" when the job takes none and never restarted)."""
    own = metrics.get("job") or {}
    notes = []
    if own.get("restarts"):
        notes.append(f"restarts {own['restarts']}")
    checkpoints = own.get("checkpoints") or {}
    if checkpoints.get("last_id") is not None:
        size = checkpoints["last_bytes"]
        notes.append(f"checkpoint #{checkpoints['last_id']} ({checkpoints['last_duration_seconds'] * 1000:.0f} ms, "
                     f"{size / 1024:.1f} KiB)")
    elif own.get("checkpoints") is not None:
        notes.append("no checkpoint yet")
    return " · ".join(notes)


def service_rows(metrics: dict[str, dict[str, Any]], graph: ExecutionGraph) -> list[ServiceRow]:
    """One row per service object (pipeline services are their tasks' rows); callers folded by operator."""
    rows = []
    for name, m in metrics.items():
        if m.get("kind") != "service":
            continue
        callers: dict[str, int] = {}
        for caller, count in (m.get("callers") or {}).items():
            node = graph.nodes.get(caller)
            key = node.basename if node is not None else caller
            callers[key] = callers.get(key, 0) + count
        row = ServiceRow(m.get("service") or name, m.get("status", ""), m.get("calls", 0), m.get("errors", 0),
                         m.get("calls_per_second"), m.get("latency_p50"), m.get("latency_p99"), callers)
        methods = (m.get("batches") or {}).values()
        batches = sum(b["batches"] for b in methods)
        if batches:
            row.batch_mean = sum(b["requests"] for b in methods) / batches
            for b in methods:
                row.batch_wait_p99 = _worst(row.batch_wait_p99, b["queue_delay_p99"])
        rows.append(row)
    return rows
