"""Cost as work grows: throughput vs parallelism and vs record size, and memory per in-flight record.

1. parallelism: from_batch(ints) -> map(work, parallelism=p) -> sink, for p in `--parallelism`,
   with three kinds of work per record:
   - light: `x * 3 + 1` (what the runtime itself costs per record),
   - python: a pure-Python loop of about 20 us (CPU-bound, holds the GIL),
   - native: SHA-256 of a 64 KB buffer, about 40 us (CPU-bound in C, releases the GIL);
   on `LocalEnvironment` (threads of one process), and with `--ray` the python and native work
   on `RayEnvironment` too (every map instance an actor, a process of its own; the rpc transport,
   RayEnvironment's default). Beside them the
   fused loop (the same work in one loop on one core) is measured in the same process just before
   each run, and the run's speed-up is its rate over that one.
2. record size: from_batch(bytes records of 64 B .. 64 KB) -> map(identity) -> sink on
   `LocalEnvironment` and the hand-written thread pipeline batched by 100 (lists of bytes
   through two `queue.Queue`s), and with `--ray` on `RayEnvironment` with the rpc transport
   (every record pickled and sent over ZeroMQ between actor processes); records/s and MB/s.
   A run cycles through a pool of distinct objects, so every batch holds distinct records
   (pickle would send repeats of one object once).
3. memory per in-flight record: source -> map(identity) -> sink where the sink holds its first
   record until the source has stalled (every queue full: backpressure). The Python heap
   (tracemalloc) and the process's RSS are read then, at two queue capacities; the slope,
   (memory at the large capacity - at the small) / (records in flight at the large - at the
   small), is what one more record in flight costs, beside the record itself (the records are
   built before the baseline), for small dicts and for 1 KB bytes records, on `LocalEnvironment`
   and the hand-written pipelines (one record per `queue.Queue` put, and lists of 100).

Throughput on the local backend is timed from submit() to the end of wait(). On Ray, where a job
starts and ends one actor process per task (seconds on a busy 2-core machine), the map stage is
timed by its instances: from the first record any instance took to the last any finished. Every
measurement runs in its own process, rounds interleaved; medians are printed with the ratio to
the fused loop (parallelism) or to the batched threads (size, memory), and charts are written
to `--chart-dir` (needs matplotlib).

    python benchmarks/bench_scaling.py [--parts parallelism,size,memory] [--rounds 3] [--ray]
                                       [--parallelism 1,2,4,8] [--sizes 64,256,1024,4096,16384,65536]
                                       [--chart-dir .] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ray reads this when imported: a local Ray binds to 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from _support import describe, load_average, machine, print_result, pyplot, run_isolated, time_threads

PARTS = ("parallelism", "size", "memory")
WORKS = ("light", "python", "native")
RECORDS = {"light": 1_000_000, "python": 60_000, "native": 30_000}
"""Records per parallelism run, per kind of work (about a second of work on one core each)."""
RECORDS_RAY = {"python": 120_000, "native": 60_000}
"""The same on Ray, twice as many (Ray's map stage is timed by its instances; see run_ray)."""
SIZE_RECORDS = 1_000_000
"""Records per size run on one process (they move by reference there, whatever their size)."""
SIZE_VOLUME_RAY = 512 * 2**20
"""Bytes per size run on Ray (every record pickled across processes): 5,000 to 200,000 records."""
SIZE_POOL = 128 * 2**20
"""Bytes of distinct record objects per size run (at least 1,024 objects, cycled through: every batch
holds distinct objects, so pickle cannot share repeats)."""
WARM_UP = 1000
"""Records of an untimed local run before the measured one, in the same process (first-use costs)."""
MEMORY_CAPACITIES = (1024, 32768)
"""The two queue capacities (records) whose difference gives the memory of one more record in flight."""
MEMORY_RECORDS = 400_000
MEMORY_KINDS = {"dict": "small dict", "bytes": "1 KB bytes"}
MEMORY_SYSTEMS = ("sage local", "threads 1", "threads 100")
STALL_SECONDS = 0.5
"""The source counts as stalled once its count has not moved for this long."""
QUEUE_RECORDS = 4096
_END = object()
BLOB = bytes(range(256)) * 256  # 64 KB


# --------------------------------------------------------------------------- work per record
def light(x: int) -> int:
    return x * 3 + 1


def python_work(x: int) -> int:
    for _ in range(500):
        x = (x * 31 + 7) % 1_000_003
    return x


def native_work(x: int) -> int:
    # hashlib releases the GIL while it hashes more than 2 KB.
    return hashlib.sha256(BLOB).digest()[0] + x


WORK: dict[str, Callable[[int], int]] = {"light": light, "python": python_work, "native": native_work}


def identity(record: Any) -> Any:
    return record


def size_records(size: int, ray: bool) -> list[bytes]:
    """The records of one size run: a pool of distinct bytes objects of `size` bytes, cycled through."""
    n = max(5_000, min(200_000, SIZE_VOLUME_RAY // size)) if ray else SIZE_RECORDS
    pool = [i.to_bytes(8, "little") * (size // 8) for i in range(max(1024, min(n, SIZE_POOL // size)))]
    return [pool[i % len(pool)] for i in range(n)]


# --------------------------------------------------------------------------- a sink that counts
def meter_class() -> type:
    from sage.kernel.api.function import SinkFunction

    class Meter(SinkFunction):
        """Counts its records; writes the count to `path` as JSON when the stream ends (from any process)."""

        def __init__(self, path: str) -> None:
            self.path = path
            self.count = 0

        def execute(self, data: Any) -> None:
            self.count += 1

        def close(self) -> None:
            Path(self.path).write_text(json.dumps({"count": self.count}))

    return Meter


def run_local(records: list[Any], fn: Callable[[Any], Any], parallelism: int) -> dict:
    """{"rate", "total"} of records -> map(fn, parallelism) -> Meter on LocalEnvironment, from submit() to the
    end of wait() (`total` seconds)."""
    from sage.kernel import LocalEnvironment

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "meter.json")
        env = LocalEnvironment("scaling")
        env.from_batch(records).map(fn, parallelism=parallelism).sink(meter_class(), path)
        started = time.perf_counter()
        env.submit(autostop=True)
        total = time.perf_counter() - started
        count = json.loads(Path(path).read_text())["count"]
    if count != len(records):
        raise RuntimeError(f"local: the sink got {count} of {len(records)} records")
    return {"rate": len(records) / total, "total": total}


def timed_map_class() -> type:
    from sage.kernel.api.function import MapFunction

    class TimedMap(MapFunction):
        """Applies `fn`; notes the wall-clock time of its first and last record in a file of `directory`."""

        def __init__(self, fn: Callable[[Any], Any], directory: str) -> None:
            self.fn = fn
            self.directory = directory
            self.first = self.last = 0.0

        def execute(self, data: Any) -> Any:
            now = time.time()  # wall clock: comparable between the actors' processes
            if not self.first:
                self.first = now
            self.last = now
            return self.fn(data)

        def close(self) -> None:
            Path(self.directory, f"map-{uuid.uuid4().hex}.json").write_text(json.dumps([self.first, self.last]))

    return TimedMap


def run_ray(transport: str, records: list[Any], fn: Callable[[Any], Any], parallelism: int) -> dict:
    """records -> map(fn, parallelism) -> sink on Ray: {"rate", "total"}. `rate` counts over the map stage's
    window, from the first record any map instance took to the last one any finished, which leaves out
    the start-up and end of the job's actors (several seconds on a busy 2-core machine)."""
    from sage.kernel import RayEnvironment

    with tempfile.TemporaryDirectory() as tmp:
        meter = str(Path(tmp) / "meter.json")
        env = RayEnvironment("scaling", config={"transport": transport})
        env.from_batch(records).map(timed_map_class(), fn, tmp, parallelism=parallelism).sink(meter_class(), meter)
        started = time.perf_counter()
        env.submit(autostop=True)
        total = time.perf_counter() - started
        count = json.loads(Path(meter).read_text())["count"]
        windows = [json.loads(f.read_text()) for f in Path(tmp).glob("map-*.json")]
    if count != len(records):
        raise RuntimeError(f"ray/{transport}: the sink got {count} of {len(records)} records")
    first = min(w[0] for w in windows if w[0])
    last = max(w[1] for w in windows)
    return {"rate": len(records) / (last - first), "total": total}


def run_fused(records: list[Any], fn: Callable[[Any], Any]) -> dict:
    started = time.perf_counter()
    for record in records:
        fn(record)
    return {"rate": len(records) / (time.perf_counter() - started)}


def run_threads_batched(records: list[bytes]) -> dict:
    """source -> map(identity) -> sink on three threads, lists of 100 records per put."""
    batch = 100
    q1: queue.Queue[Any] = queue.Queue(QUEUE_RECORDS // batch)
    q2: queue.Queue[Any] = queue.Queue(QUEUE_RECORDS // batch)
    got: list[int] = []

    def source() -> None:
        for i in range(0, len(records), batch):
            q1.put(records[i:i + batch])
        q1.put(_END)

    def mapper() -> None:
        while (item := q1.get()) is not _END:
            q2.put([identity(r) for r in item])
        q2.put(_END)

    def sink() -> None:
        total = 0
        while (item := q2.get()) is not _END:
            for r in item:
                total += len(r)
        got.append(total)

    elapsed = time_threads(source, mapper, sink)
    if got != [sum(len(r) for r in records)]:
        raise RuntimeError("threads: lost bytes")
    return {"rate": len(records) / elapsed}


# --------------------------------------------------------------------------- memory
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle(count: Callable[[], int], timeout: float = 60.0) -> int:
    """The value of `count()` once it stopped moving for STALL_SECONDS (the pipeline is full)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= STALL_SECONDS:
            return now
        time.sleep(0.05)
    raise RuntimeError(f"the pipeline did not stall within {timeout} s (count {last})")


def memory_records(kind: str) -> list[Any]:
    """MEMORY_RECORDS records of `kind`: small dicts, or distinct 1 KB bytes objects."""
    if kind == "dict":
        return [{"id": i, "value": i % 1000} for i in range(MEMORY_RECORDS)]
    return [i.to_bytes(8, "little") * 128 for i in range(MEMORY_RECORDS)]


def memory_probe(system: str, capacity: int, probe: str, kind: str) -> dict:
    """{"in_flight", "bytes"}: records held by a stalled pipeline with queues of `capacity` records, and the
    memory (tracemalloc heap or RSS, by `probe`) it holds beyond a baseline taken before it started."""
    records = memory_records(kind)
    emitted = [0]
    release = threading.Event()
    if probe == "tracemalloc":
        tracemalloc.start()
    measure = (lambda: tracemalloc.get_traced_memory()[0]) if probe == "tracemalloc" else _rss
    if system.startswith("sage"):
        from sage.kernel import LocalEnvironment
        from sage.kernel.api.function import BatchFunction, SinkFunction

        class Counted(BatchFunction):
            def __init__(self) -> None:
                self.i = 0

            def execute(self) -> Any:
                if self.i == len(records):
                    return None
                emitted[0] = self.i = self.i + 1
                return records[self.i - 1]

        class Hold(SinkFunction):
            def execute(self, data: Any) -> None:
                release.wait(120)

        env = LocalEnvironment("memory", config={"queue_maxsize": capacity})
        env.from_batch(Counted).map(identity).sink(Hold)
        base = measure()
        job = env.submit()
        in_flight = _settle(lambda: emitted[0])
        held = measure() - base
        release.set()
        job.wait(120)
    else:
        batch = 1 if system == "threads 1" else 100
        q1: queue.Queue[Any] = queue.Queue(max(1, capacity // batch))
        q2: queue.Queue[Any] = queue.Queue(max(1, capacity // batch))

        def source() -> None:
            for i in range(0, len(records), batch):
                q1.put(records[i] if batch == 1 else records[i:i + batch])
                emitted[0] += batch
            q1.put(_END)

        def mapper() -> None:
            while (item := q1.get()) is not _END:
                q2.put(identity(item) if batch == 1 else [identity(r) for r in item])
            q2.put(_END)

        def sink() -> None:
            q2.get()
            release.wait(120)
            while q2.get() is not _END:
                pass

        base = measure()
        threads = [threading.Thread(target=f) for f in (source, mapper, sink)]
        for t in threads:
            t.start()
        in_flight = _settle(lambda: emitted[0])
        held = measure() - base
        release.set()
        for t in threads:
            t.join(120)
    return {"in_flight": in_flight, "bytes": held}


# --------------------------------------------------------------------------- one measurement
def worker(spec: dict) -> dict:
    part = spec["part"]
    if part == "parallelism":
        fn = WORK[spec["work"]]
        records = list(range((RECORDS_RAY if spec["system"] == "ray" else RECORDS)[spec["work"]]))
        # The one-core reference of this run, measured in this process just before it: a speed-up
        # compares moments apart, not runs minutes apart on a machine whose load changes.
        fused = run_fused(records[:len(records) // 4], fn)["rate"]
        if spec["system"] == "ray":
            return {**run_ray("rpc", records, fn, spec["p"]), "fused": fused}
        run_local(records[:WARM_UP], fn, spec["p"])
        return {**run_local(records, fn, spec["p"]), "fused": fused}
    if part == "size":
        records = size_records(spec["size"], ray=spec["system"] == "sage ray rpc")
        if spec["system"] == "threads 100":
            run_threads_batched(records[:WARM_UP])
            return run_threads_batched(records)
        if spec["system"] == "sage ray rpc":
            return run_ray("rpc", records, identity, 1)
        run_local(records[:WARM_UP], identity, 1)
        return run_local(records, identity, 1)
    return memory_probe(spec["system"], spec["capacity"], spec["probe"], spec["record"])


def plan(args: argparse.Namespace) -> list[dict]:
    """Every measurement of one round."""
    specs: list[dict] = []
    if "parallelism" in args.parts:
        for work in WORKS:
            specs += [{"part": "parallelism", "work": work, "system": "local", "p": p} for p in args.parallelism]
        if args.ray:
            specs += [{"part": "parallelism", "work": work, "system": "ray", "p": p}
                      for work in ("python", "native") for p in args.parallelism]
    if "size" in args.parts:
        specs += [{"part": "size", "size": size, "system": system}
                  for size in args.sizes for system in size_systems(args)]
    if "memory" in args.parts:
        specs += [{"part": "memory", "system": system, "capacity": capacity, "probe": probe, "record": record}
                  for record in MEMORY_KINDS for system in MEMORY_SYSTEMS
                  for capacity in MEMORY_CAPACITIES for probe in ("tracemalloc", "rss")]
    return specs


def size_systems(args: argparse.Namespace) -> tuple[str, ...]:
    return ("sage local", "threads 100", *(("sage ray rpc",) if args.ray else ()))


def key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


# --------------------------------------------------------------------------- reports and charts
def med(results: dict[str, list[dict]], field: str, **spec: Any) -> float | None:
    runs = results.get(key(spec))
    return statistics.median(r[field] for r in runs) if runs else None


def speedup(results: dict, **spec: Any) -> float | None:
    """Median over rounds of rate / the fused loop measured in the same process just before."""
    runs = results.get(key({"part": "parallelism", **spec}))
    return statistics.median(r["rate"] / r["fused"] for r in runs) if runs else None


def report_parallelism(results: dict, args: argparse.Namespace) -> list[str]:
    lines = ["\nthroughput vs parallelism: from_batch -> map(work, parallelism=p) -> sink (records/s, median; in "
             "brackets the speed-up: rate / the fused loop on one core, measured in the same process just before)"]
    for work in WORKS:
        fused = statistics.median(r["fused"] for spec, runs in results.items() for r in runs
                                  if json.loads(spec).get("work") == work)
        on_ray = f" ({RECORDS_RAY[work]:,} on Ray)" if args.ray and work in RECORDS_RAY else ""
        lines.append(f"  {work} work, {RECORDS[work]:,} records{on_ray}; fused loop {fused:,.0f}/s")
        for system in ("local", "ray"):
            cells = []
            for p in args.parallelism:
                rate = med(results, "rate", part="parallelism", work=work, system=system, p=p)
                if rate is not None:
                    up = speedup(results, work=work, system=system, p=p)
                    cells.append(f"p={p}: {rate:>10,.0f} ({up:.2f}x)")
            if cells:
                lines.append(f"    {system:<6} " + "   ".join(cells))
    return lines


def report_size(results: dict, args: argparse.Namespace) -> list[str]:
    lines = ["\nthroughput vs record size: from_batch(bytes) -> map(identity) -> sink "
             "(records/s and MB/s, median; ratio to threads 100)"]
    for size in args.sizes:
        threads = med(results, "rate", part="size", size=size, system="threads 100")
        cells = []
        for system in size_systems(args):
            rate = med(results, "rate", part="size", size=size, system=system)
            cells.append(f"{system} {rate:>10,.0f}/s {rate * size / 1e6:>7,.0f} MB/s ({rate / threads:.2f}x)")
        lines.append(f"  {size:>6} B  " + "   ".join(cells))
    return lines


def memory_slopes(results: dict) -> dict[tuple[str, str], dict[str, float]]:
    """Per (record kind, system): bytes per in-flight record for each probe (the slope between the two
    capacities, median over rounds), and the records in flight at the large capacity."""
    slopes: dict[tuple[str, str], dict[str, float]] = {}
    small, large = MEMORY_CAPACITIES
    for record in MEMORY_KINDS:
        for system in MEMORY_SYSTEMS:
            row: dict[str, float] = {}
            for probe in ("tracemalloc", "rss"):
                spec = {"part": "memory", "system": system, "probe": probe, "record": record}
                a = results.get(key({**spec, "capacity": small}))
                b = results.get(key({**spec, "capacity": large}))
                if not a or not b:
                    continue
                per = [(y["bytes"] - x["bytes"]) / (y["in_flight"] - x["in_flight"])
                       for x, y in zip(a, b, strict=True)]
                row[probe] = statistics.median(per)
                row["in_flight"] = statistics.median(y["in_flight"] for y in b)
            if row:
                slopes[record, system] = row
    return slopes


def report_memory(results: dict) -> list[str]:
    small, large = MEMORY_CAPACITIES
    lines = [f"\nmemory per in-flight record beyond the record itself (source -> map -> sink held full; "
             f"slope between queues of {small:,} and {large:,} records; median)"]
    slopes = memory_slopes(results)
    for record, label in MEMORY_KINDS.items():
        size = _dict_bytes() if record == "dict" else sys.getsizeof(b"x" * 1024)
        lines.append(f"  records: {label} ({size:,} bytes each)")
        threads = slopes.get((record, "threads 100"), {}).get("tracemalloc")
        for (kind, system), row in slopes.items():
            if kind != record:
                continue
            ratio = f"  ({row['tracemalloc'] / threads:.2f}x threads 100)" if threads else ""
            lines.append(f"    {system:<12} heap {row.get('tracemalloc', float('nan')):>8,.1f} B   "
                         f"RSS {row.get('rss', float('nan')):>8,.1f} B   "
                         f"(in flight at {large:,}: {row['in_flight']:,.0f}){ratio}")
    return lines


def _dict_bytes() -> int:
    record = {"id": 123_456, "value": 456}
    return sys.getsizeof(record) + sum(sys.getsizeof(v) for v in record.values())


def charts(results: dict, args: argparse.Namespace, info: dict) -> None:
    plt = pyplot()
    if plt is None:
        return
    out = Path(args.chart_dir)
    out.mkdir(parents=True, exist_ok=True)
    subtitle = describe(info)
    if "parallelism" in args.parts:
        fig, axes = plt.subplots(1, len(WORKS), figsize=(13, 4.5), sharey=True)
        titles = {"light": "light: x * 3 + 1", "python": "python: ~20 us loop (holds the GIL)",
                  "native": "native: SHA-256 of 64 KB (releases the GIL)"}
        for ax, work in zip(axes, WORKS, strict=True):
            for system, style in (("local", "o-"), ("ray", "s-")):
                points = [(p, speedup(results, work=work, system=system, p=p)) for p in args.parallelism]
                points = [(p, r) for p, r in points if r is not None]
                if points:
                    label = "sage local (threads)" if system == "local" else "sage ray (actors)"
                    ax.plot([p for p, _ in points], [r for _, r in points], style, label=label)
                    for p, r in points:
                        ax.annotate(f"{r:.2f}", (p, r), fontsize=7, xytext=(3, 4), textcoords="offset points")
            ax.axhline(1, color="gray", linestyle="--", label="fused loop, 1 core")
            if info.get("cores", 1) > 1:
                ax.axhline(info["cores"], color="gray", linestyle=":", label=f"{info['cores']} cores' worth")
            ax.set_xscale("log", base=2)
            ax.set_xticks(args.parallelism)
            ax.set_xticklabels([str(p) for p in args.parallelism])
            ax.set_ylim(bottom=0)
            ax.set_title(titles[work], fontsize=9)
            ax.set_xlabel("map parallelism")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("records/s / fused loop on one core (median)")
        fig.suptitle(f"throughput vs parallelism, as a multiple of the same work in one loop on one core\n{subtitle}",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scaling_parallelism.png", dpi=110)
        plt.close(fig)
    if "size" in args.parts:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for system, style in zip(size_systems(args), ("o-", "^--", "s-"), strict=False):
            rates = [med(results, "rate", part="size", size=s, system=system) for s in args.sizes]
            axes[0].plot(args.sizes, rates, style, label=system)
            axes[1].plot(args.sizes, [r * s / 1e6 for r, s in zip(rates, args.sizes, strict=True)], style, label=system)
        for ax, label in zip(axes, ("records/s (median)", "MB/s of records (median)"), strict=True):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(args.sizes)
            ax.set_xticklabels([f"{s // 1024} KB" if s >= 1024 else f"{s} B" for s in args.sizes])
            ax.set_xlabel("record size")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        fig.suptitle(f"throughput vs record size: from_batch(bytes) -> map(identity) -> sink\n{subtitle}",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scaling_record_size.png", dpi=110)
        plt.close(fig)
    if "memory" in args.parts:
        slopes = memory_slopes(results)
        fig, axes = plt.subplots(1, len(MEMORY_KINDS), figsize=(12, 4.5))
        width = 0.38
        for ax, (record, label) in zip(axes, MEMORY_KINDS.items(), strict=True):
            systems = [system for kind, system in slopes if kind == record]
            for i, probe in enumerate(("tracemalloc", "rss")):
                values = [slopes[record, system].get(probe, 0.0) for system in systems]
                bars = ax.bar([x + (i - 0.5) * width for x in range(len(systems))], values, width,
                              label="Python heap (tracemalloc)" if probe == "tracemalloc" else "process RSS")
                for bar, v in zip(bars, values, strict=True):
                    ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, max(v, 0)), ha="center",
                                fontsize=8, xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(range(len(systems)))
            ax.set_xticklabels(systems)
            ax.set_ylabel("bytes per extra record in flight (median)")
            ax.axhline(0, color="black", linewidth=0.5)
            ax.legend(fontsize=8)
            ax.set_title(f"records: {label}", fontsize=9)
        fig.suptitle(f"memory per in-flight record, beyond the record itself\n{subtitle}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scaling_memory.png", dpi=110)
        plt.close(fig)
    print(f"charts written to {out}/scaling_*.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: " + ", ".join(PARTS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--parallelism", default="1,2,4,8", help="map parallelism values")
    parser.add_argument("--sizes", default="64,256,1024,4096,16384,65536", help="record sizes, bytes (multiples of 8)")
    parser.add_argument("--ray", action="store_true", help="also run the python work on RayEnvironment (a local Ray)")
    parser.add_argument("--chart-dir", default=".", help="where the PNG charts go ('' for none)")
    parser.add_argument("--json", default="", help="also write every measurement and the machine to this file")
    args = parser.parse_args()
    if args.worker:
        print_result(worker(json.loads(args.worker)))
        return
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    args.parallelism = [int(p) for p in args.parallelism.split(",")]
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if any(p not in PARTS for p in args.parts) or any(s < 8 or s % 8 for s in args.sizes):
        parser.error(f"parts are {', '.join(PARTS)}; sizes are multiples of 8")
    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            parser.error("--ray needs Ray: pip install -e '.[ray]'")

    info = machine()
    print(f"load average (1, 5, 15 min) at the start: {info['load_average']}")
    print(f"machine: {describe(info)}", flush=True)
    specs = plan(args)
    results: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):
        shift = round_ * len(specs) // max(1, args.rounds)
        for spec in specs[shift:] + specs[:shift]:  # a rotating order: nobody always goes first
            result = run_isolated(__file__, spec)
            results.setdefault(key(spec), []).append(result)
            shown = {k: v for k, v in result.items() if k in ("rate", "in_flight", "bytes")}
            print(f"  round {round_ + 1}/{args.rounds} {spec} {shown}", file=sys.stderr, flush=True)
    lines = []
    if "parallelism" in args.parts:
        lines += report_parallelism(results, args)
    if "size" in args.parts:
        lines += report_size(results, args)
    if "memory" in args.parts:
        lines += report_memory(results)
    for line in lines:
        print(line)
    print(f"\nload average (1, 5, 15 min) at the end: {load_average()}")
    if args.chart_dir:
        charts(results, args, info)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "rounds": args.rounds, "results": results}, f, indent=1)
        print(f"measurements written to {args.json}")


if __name__ == "__main__":
    main()
