"""Packets/s of a source -> map -> sink job on RayEnvironment, against raw ray.util.queue.Queue.

Every task is a Ray actor. The sink times its own stream: from its first record to
its last (`time.perf_counter` in the sink's process), so actor and queue start-up
are left out; the script prints the whole submit-to-end time beside it. Packets
are small dicts ({"id": i, "value": 2i}), the same as in bench_ray_queue.py.

- job, transport "ray": every edge is a RayQueueDescriptor (the default);
- job, transport "rpc": every edge is an RPC queue hosted by the consumer actor;
- raw single / raw batch 100: `ray.util.queue.Queue` between two actors, one item
  per remote call and `put_nowait_batch`/`get_nowait_batch` of 100 (the producer
  and consumer of bench_ray_queue.py, run here in the same Ray).
- service calls: a task actor makes `--calls` synchronous calls to a service actor
  (the echo and caller of bench_service.py, a tenth more calls to warm up) over
  each transport; the p50 round trip is printed next to a no-op Ray actor call, the
  floor of every put and get on a Ray queue.

Best of `--repeat` runs each; prints rates and the job/raw ratios.

    python benchmarks/bench_ray_pipeline.py [--n 200000] [--n-single 2000] [--calls 300] [--repeat 2]
                                            [--transports ray,rpc] [--batch-size N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from typing import Any

# Ray reads this when imported: bind the local Ray to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray
from ray.util.queue import Queue as RawQueue

from bench_ray_queue import RAW_BATCH, Consumer, Producer, _rate, _round_trip_us
from bench_service import Echo, TimedCaller
from sage.kernel import RayEnvironment
from sage.kernel.api.function import BatchFunction, SinkFunction

JOB_TIMEOUT = 600.0


@ray.remote(num_cpus=0)
class Results:
    """Where task actors report: (count, seconds) measured in their own process."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []

    def report(self, count: int, seconds: float) -> None:
        self.reports.append((count, seconds))

    def take(self) -> list[tuple[int, float]]:
        reports, self.reports = self.reports, []
        return reports


class Records(BatchFunction):
    """Emits `n` small dicts, built in the source actor."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.i = 0

    def execute(self) -> dict[str, int] | None:
        i = self.i
        if i == self.n:
            return None
        self.i = i + 1
        return {"id": i, "value": 2 * i}


class TimedSink(SinkFunction):
    """Counts records and times first to last; reports to `results` when the stream ends."""

    def __init__(self, results: Any) -> None:
        self.results = results
        self.count = 0
        self.first = self.last = 0.0

    def execute(self, data: dict[str, int]) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1

    def close(self) -> None:
        ray.get(self.results.report.remote(self.count, self.last - self.first))


class ReportMedian(SinkFunction):
    """Reports (count, median) of each list of round-trip times it receives."""

    def __init__(self, results: Any) -> None:
        self.results = results

    def execute(self, samples: list[float]) -> None:
        ray.get(self.results.report.remote(len(samples), statistics.median(samples)))


def service_p50(transport: str, calls: int, results: Any) -> float:
    """Median seconds of one synchronous service call between two actors (bench_service.py's caller)."""
    env = RayEnvironment(f"bench-service-{transport}", config={"transport": transport})
    env.register_service("echo", Echo)
    env.from_batch([0]).map(TimedCaller, calls, calls // 10).sink(ReportMedian, results)
    env.submit(autostop=True)
    ((_, p50),) = ray.get(results.take.remote())
    return p50


def job_rate(n: int, transport: str, batch_size: int | None, results: Any) -> tuple[float, float]:
    """(packets/s from the sink's first record to its last, seconds from submit to the job's end)."""
    config: dict[str, Any] = {"transport": transport}
    if batch_size is not None:
        config["batch_size"] = batch_size
    env = RayEnvironment(f"bench-{transport}", config=config)
    env.from_batch(Records, n).map(lambda record: record).sink(TimedSink, results)
    started = time.perf_counter()
    env.submit(autostop=True)
    total = time.perf_counter() - started
    ((count, seconds),) = ray.get(results.take.remote())
    if count != n:
        raise RuntimeError(f"lost packets: {count} of {n}")
    return (count - 1) / seconds, total


def raw_rates(n: int, n_single: int) -> dict[str, float]:
    producer, consumer = Producer.remote(), Consumer.remote()
    try:
        ray.get(producer.prepare.remote(n))
        raw = RawQueue()
        batch = _rate(n, lambda: producer.raw_batch.remote(raw), lambda: consumer.raw_batch.remote(raw, n))
        raw.shutdown(force=True)
        ray.get(producer.prepare.remote(n_single))
        raw = RawQueue(maxsize=10_000)
        single = _rate(n_single, lambda: producer.raw_single.remote(raw),
                       lambda: consumer.raw_single.remote(raw, n_single))
        raw.shutdown(force=True)
    finally:
        ray.kill(producer)
        ray.kill(consumer)
    return {f"raw batch {RAW_BATCH}": batch, "raw single": single}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="packets per job (multiple of 100)")
    parser.add_argument("--n-single", type=int, default=2_000, help="packets for raw one-at-a-time")
    parser.add_argument("--calls", type=int, default=300, help="synchronous service calls per transport")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--transports", default="ray,rpc")
    parser.add_argument("--batch-size", type=int, default=None, help="router batch size (default: the job's)")
    args = parser.parse_args()
    if args.n % RAW_BATCH:
        parser.error(f"--n must be a multiple of {RAW_BATCH}")
    ray.init(address="local", num_cpus=16, include_dashboard=False, log_to_driver=False)
    rates: dict[str, float] = {}
    totals: dict[str, float] = {}
    calls: dict[str, float] = {}
    try:
        results = Results.remote()
        for _ in range(args.repeat):
            for transport in args.transports.split(","):
                name = f"job {transport}"
                rate, total = job_rate(args.n, transport, args.batch_size, results)
                rates[name] = max(rates.get(name, 0.0), rate)
                totals[name] = min(totals.get(name, float("inf")), total)
                p50 = service_p50(transport, args.calls, results)
                calls[transport] = min(calls.get(transport, float("inf")), p50)
            for name, rate in raw_rates(args.n, args.n_single).items():
                rates[name] = max(rates.get(name, 0.0), rate)
        ray.kill(results)
        round_trip = _round_trip_us()
    finally:
        ray.shutdown()
    print(f"cpus: {os.cpu_count()}  packets: {args.n} (raw single: {args.n_single})  repeat: {args.repeat}")
    for name, rate in rates.items():
        extra = f"   (submit to end: {totals[name]:.1f} s)" if name in totals else ""
        print(f"{name:>14}: {rate:12,.0f} packets/s{extra}")
    jobs = [name for name in rates if name.startswith("job")]
    raws = [name for name in rates if name.startswith("raw")]
    for name, raw_name in itertools.product(jobs, raws):
        print(f"{name} / {raw_name}: {rates[name] / rates[raw_name]:.1f}x")
    if "job ray" in rates and "job rpc" in rates:
        print(f"job ray / job rpc: {rates['job ray'] / rates['job rpc']:.2f}x")
    print(f"no-op Ray actor call round trip: {round_trip:,.0f} us")
    for transport, p50 in calls.items():
        micros = p50 * 1e6
        print(f"sync service call over {transport}: p50 {micros:,.0f} us = {micros / round_trip:.1f} no-op actor calls")


if __name__ == "__main__":
    main()
