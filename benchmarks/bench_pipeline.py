"""Pipeline throughput: from_batch -> map -> sink, against hand-written equivalents.

Three runs of the same work in the same process, over the same small dict
records (built before timing):

- sage: `LocalEnvironment` with `from_batch(records).map(fn).sink(Sum)`,
  timed from `submit()` to the end of `wait()`;
- threads: a hand-written 3-thread pipeline (source, map, sink) linked by
  two bounded `queue.Queue`s, one `put`/`get` per record, ended by a sentinel;
- fused: the map and the sink in one loop (the floor no pipeline can beat).

Every run checks the sum its sink computed. Prints rates (records per
second) and the ratios sage/threads and sage/fused. Then times
submit-to-finish of a 10-record job (median and best of many).

    python benchmarks/bench_pipeline.py [--n 1000000] [--maxsize 4096] [--repeat 3]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import time
from typing import Any

from _support import time_threads
from sage.kernel import LocalEnvironment
from sage.kernel.api.function import SinkFunction

_END = object()


def transform(record: dict[str, int]) -> int:
    """The map's work: a little arithmetic on one record."""
    return record["value"] * 3 + 1


def expected_total(records: list[dict[str, int]]) -> int:
    return sum(transform(r) for r in records)


class Sum(SinkFunction):
    """Adds up what it receives into a shared result list (one slot per instance)."""

    def __init__(self, out: list[int]) -> None:
        self.out = out
        self.total = 0

    def execute(self, data: int) -> None:
        self.total += data

    def close(self) -> None:
        self.out.append(self.total)


def run_sage(records: list[dict[str, int]], maxsize: int) -> float:
    out: list[int] = []
    env = LocalEnvironment("bench", config={"queue_maxsize": maxsize})
    env.from_batch(records).map(transform).sink(Sum, out)
    started = time.perf_counter()
    env.submit(autostop=True)
    elapsed = time.perf_counter() - started
    _check("sage", sum(out), records)
    return elapsed


def run_threads(records: list[dict[str, int]], maxsize: int) -> float:
    q1: queue.Queue[Any] = queue.Queue(maxsize)
    q2: queue.Queue[Any] = queue.Queue(maxsize)
    result: list[int] = []

    def source() -> None:
        put = q1.put
        for record in records:
            put(record)
        put(_END)

    def mapper() -> None:
        get, put = q1.get, q2.put
        while (record := get()) is not _END:
            put(transform(record))
        put(_END)

    def sink() -> None:
        get = q2.get
        total = 0
        while (value := get()) is not _END:
            total += value
        result.append(total)

    elapsed = time_threads(source, mapper, sink)
    _check("threads", sum(result), records)
    return elapsed


def run_fused(records: list[dict[str, int]]) -> float:
    started = time.perf_counter()
    total = 0
    for record in records:
        total += transform(record)
    elapsed = time.perf_counter() - started
    _check("fused", total, records)
    return elapsed


def _check(name: str, total: int, records: list[dict[str, int]]) -> None:
    if total != expected_total(records):
        raise RuntimeError(f"{name} run computed {total}, expected {expected_total(records)}")


def small_job_latency(runs: int) -> list[float]:
    """Seconds from submit() to the end of wait() for a 10-record job, `runs` times."""
    times = []
    for _ in range(runs):
        out: list[int] = []
        env = LocalEnvironment("latency")
        env.from_batch([{"value": i} for i in range(10)]).map(transform).sink(Sum, out)
        started = time.perf_counter()
        env.submit(autostop=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records per run")
    parser.add_argument("--maxsize", type=int, default=4096, help="queue capacity (both pipelines)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    parser.add_argument("--latency-runs", type=int, default=50, help="10-record jobs to time")
    args = parser.parse_args()

    records = [{"id": i, "value": i % 1000} for i in range(args.n)]
    best = {"sage": float("inf"), "threads": float("inf"), "fused": float("inf")}
    for _ in range(args.repeat):
        best["sage"] = min(best["sage"], run_sage(records, args.maxsize))
        best["threads"] = min(best["threads"], run_threads(records, args.maxsize))
        best["fused"] = min(best["fused"], run_fused(records))
    rates = {name: args.n / seconds for name, seconds in best.items()}

    print(f"from_batch -> map -> sink, {args.n:,} dict records, queue maxsize {args.maxsize}, best of {args.repeat}")
    for name, label in (("sage", "sage LocalEnvironment"), ("threads", "hand-written 3 threads"),
                        ("fused", "fused single loop")):
        print(f"  {label:<24} {rates[name]:>12,.0f} records/s  ({best[name]:.3f} s)")
    print(f"  sage / threads  {rates['sage'] / rates['threads']:.2f}x")
    print(f"  sage / fused    {rates['sage'] / rates['fused']:.2f}x")

    latencies = small_job_latency(args.latency_runs)
    print(f"10-record job, submit to finish over {args.latency_runs} runs: "
          f"median {statistics.median(latencies) * 1e3:.2f} ms, best {min(latencies) * 1e3:.2f} ms, "
          f"worst {max(latencies) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
