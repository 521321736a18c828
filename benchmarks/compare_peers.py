"""Side by side: sage-kernel, Bytewax and hand-written threads on the same three pipelines.

Pipelines (see peer_pipelines.py for each system's code):

- map: small dicts -> map -> sink (`--n` records);
- keyed: small dicts -> key by one of 1,000 keys -> running count per key, 2 instances -> sink
  (`--n-keyed` records);
- wordcount: lines of 8 words -> flatmap split -> key by word -> running count, 2 instances -> sink
  (`--n-lines` lines; rates count words).

Systems: sage-kernel `LocalEnvironment` on the python transport ("sage local": every task a thread
of one process); sage-kernel on the rpc transport between processes ("sage ray rpc":
`RayEnvironment` with `transport="rpc"`, every task an actor in a process of its own, every edge a
ZeroMQ queue; timed by its sink from first to last record, so Ray's start-up is left out; skipped
when Ray is not installed; on `LocalEnvironment` an rpc queue attaches to its in-process queue
object, no socket, so it would measure the python transport again); Bytewax with its defaults
(`run_main`: one worker; `TestingSource` batch_size 1) and, for reference, with a source batch of
100 ("bytewax b100"); the hand-written thread pipelines, one record per `queue.Queue` put
("threads 1") and lists of 100 ("threads 100"); and the fused single loop. Bytewax rows are
skipped, with a message, when Bytewax is not installed (`pip install -e ".[bench]"`).

Every run is a fresh process (`--worker`) that first runs the same pipeline over 1,000 records,
untimed (first-use costs), then builds the input and runs the measured one; every sink's result is
checked. Rounds are interleaved (each round runs every pipeline on every system, in a
rotating order), so machine noise hits all alike. Prints the median rate of every system, its
spread, the ratios sage/Bytewax and sage/threads 100 of the medians (and the range of the same
ratio within each round), then the issue-15 aims with MET / MISSED; writes a bar chart
(`--chart`, needs matplotlib) and, with `--json`, every measurement.

    python benchmarks/compare_peers.py [--rounds 3] [--n 1000000] [--n-keyed 500000] [--n-lines 125000]
                                       [--systems ...] [--pipelines ...] [--chart compare_peers.png] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib.util import find_spec
from typing import Any

import peer_pipelines as pp
from _support import describe, human, load_average, machine, print_result, pyplot, run_isolated

SYSTEMS = tuple(pp.SYSTEMS)
BYTEWAX_ROWS = ("bytewax", "bytewax b100")
AIMS = (
    # (pipeline, ours, theirs, at least, what the issue says)
    ("map", "sage local", "threads 100", 0.5, "local pipeline >= 0.5x the batched hand-written thread pipeline"),
    ("map", "sage local", "bytewax", 3.0, "local pipeline >= 3x Bytewax with defaults"),
    ("keyed", "sage local", "bytewax", 3.0, "keyed pipeline >= 3x Bytewax's keyed stateful_map"),
)


WARM_UP = 1000
"""Records of the untimed run before the measured one, in the same process: first-use costs (lazy
imports, first thread starts) are paid there, for every system alike."""


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured run in this process: build the input, warm up, run, check; seconds and records moved."""
    pipeline, system, n = spec["pipeline"], spec["system"], spec["n"]
    run = pp.SYSTEMS[system]
    if system != "sage ray rpc":  # timed by its sink from the first record: start-up is left out anyway
        run(pipeline, pp.make_input(pipeline, WARM_UP))
    data = pp.make_input(pipeline, n)
    seconds = run(pipeline, data)
    return {"seconds": seconds, "records": pp.records_moved(pipeline, n)}


def measure(args: argparse.Namespace, systems: list[str], sizes: dict[str, int]) -> dict[str, dict[str, list[float]]]:
    """rates[pipeline][system] = records/s of every round, measured in interleaved rounds."""
    rates: dict[str, dict[str, list[float]]] = {p: {s: [] for s in systems} for p in args.pipelines}
    for round_ in range(args.rounds):
        order = systems[round_ % len(systems):] + systems[:round_ % len(systems)]  # nobody always goes first
        for pipeline in args.pipelines:
            for system in order:
                started = time.perf_counter()
                result = run_isolated(__file__, {"pipeline": pipeline, "system": system, "n": sizes[pipeline]})
                rate = result["records"] / result["seconds"]
                rates[pipeline][system].append(rate)
                print(f"  round {round_ + 1}/{args.rounds}  {pipeline:<9} {system:<12} {rate:>13,.0f} records/s"
                      f"  ({result['seconds']:.2f} s, process {time.perf_counter() - started:.1f} s)",
                      file=sys.stderr, flush=True)
    return rates


def ratio(rates: dict[str, list[float]], ours: str, theirs: str) -> tuple[float, float, float] | None:
    """(ratio of the medians, lowest and highest ratio within one round), or None if either is missing."""
    if not rates.get(ours) or not rates.get(theirs):
        return None
    per_round = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
    return statistics.median(rates[ours]) / statistics.median(rates[theirs]), min(per_round), max(per_round)


def report(rates: dict[str, dict[str, list[float]]], sizes: dict[str, int], rounds: int) -> list[str]:
    """The table and the aims, as lines of text."""
    lines = []
    for pipeline, by_system in rates.items():
        unit = "words/s" if pipeline == "wordcount" else "records/s"
        lines.append(f"\n{pipeline}: {pp.records_moved(pipeline, sizes[pipeline]):,} {unit[:-2]} per run, "
                     f"median of {rounds} rounds")
        lines.append(f"  {'system':<13} {unit:>12} {'min':>11} {'max':>11}   {'vs bytewax':>10} {'vs threads 100':>15}")
        for system, values in by_system.items():
            if not values:
                continue
            cells = []
            for theirs in ("bytewax", "threads 100"):
                r = ratio(by_system, system, theirs)
                cells.append(f"{r[0]:.2f}x" if r and system != theirs else "")
            lines.append(f"  {system:<13} {statistics.median(values):>12,.0f} {min(values):>11,.0f} "
                         f"{max(values):>11,.0f}   {cells[0]:>10} {cells[1]:>15}")
    lines.append("\naims of issue 15 (ratio of medians; in brackets the lowest and highest ratio within a round)")
    for pipeline, ours, theirs, least, text in AIMS:
        r = ratio(rates.get(pipeline, {}), ours, theirs)
        if r is None:
            lines.append(f"  {text}: not measured ({pipeline}: {ours} or {theirs} missing)")
            continue
        verdict = "MET" if r[0] >= least else "MISSED"
        lines.append(f"  {text}: {ours} / {theirs} = {r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]  {verdict}")
    return lines


def chart(rates: dict[str, dict[str, list[float]]], path: str, title: str) -> None:
    """Grouped bars: one group per pipeline, one bar per system, median rate on a log scale."""
    plt = pyplot()
    if plt is None:
        return
    pipelines = list(rates)
    systems = [s for s in SYSTEMS if any(rates[p].get(s) for p in pipelines)]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(systems)
    colors = plt.get_cmap("tab10")
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, pipeline in enumerate(pipelines):
            values = rates[pipeline].get(system)
            if values:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(statistics.median(values))
        bars = ax.bar(xs, ys, width, label=system, color=colors(i))
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(human(y), (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(pipelines)))
    ax.set_xticklabels([f"{p} ({'words' if p == 'wordcount' else 'records'}/s)" for p in pipelines])
    ax.set_ylabel("records per second (median, log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each system once per round)")
    parser.add_argument("--n", type=int, default=1_000_000, help="records of the map pipeline")
    parser.add_argument("--n-keyed", type=int, default=500_000, help="records of the keyed pipeline")
    parser.add_argument("--n-lines", type=int, default=125_000, help="lines of the word count (8 words each)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--pipelines", default=",".join(pp.PIPELINES),
                        help="comma-separated, of: " + ", ".join(pp.PIPELINES))
    parser.add_argument("--chart", default="compare_peers.png", help="PNG bar chart to write ('' for none)")
    parser.add_argument("--json", default="", help="also write every measurement and the machine to this file")
    args = parser.parse_args()
    if args.worker:
        print_result(worker(json.loads(args.worker)))
        return

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    unknown = [s for s in systems if s not in SYSTEMS] + [p for p in args.pipelines if p not in pp.PIPELINES]
    if unknown:
        parser.error(f"unknown system or pipeline: {', '.join(unknown)}")
    if find_spec("bytewax") is None and any(s in BYTEWAX_ROWS for s in systems):
        print("Bytewax is not installed: its rows are skipped (pip install -e '.[bench]' installs it)")
        systems = [s for s in systems if s not in BYTEWAX_ROWS]
    if find_spec("ray") is None and "sage ray rpc" in systems:
        print("Ray is not installed: the 'sage ray rpc' row is skipped (pip install -e '.[ray]' installs it)")
        systems.remove("sage ray rpc")
    sizes = {"map": args.n, "keyed": args.n_keyed, "wordcount": args.n_lines}

    info = machine()
    print(f"load average (1, 5, 15 min) at the start: {info['load_average']}")
    print(f"machine: {describe(info)}")
    print(f"{args.rounds} interleaved rounds of {', '.join(systems)}; every run in its own process", flush=True)
    rates = measure(args, systems, sizes)
    for line in report(rates, sizes, args.rounds):
        print(line)
    print(f"\nload average (1, 5, 15 min) at the end: {load_average()}")
    if args.chart:
        chart(rates, args.chart, f"median of {args.rounds} interleaved rounds, each run its own process\n"
                                 f"{describe(info)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "rounds": args.rounds, "sizes": sizes, "rates": rates}, f, indent=1)
        print(f"measurements written to {args.json}")


if __name__ == "__main__":
    main()
