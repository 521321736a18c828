"""Records/s, start-up and service calls of jobs on RayEnvironment, beside the raw Ray primitives, in one run.

Every task is a Ray actor. Clocks are `time.perf_counter` (CLOCK_MONOTONIC,
one clock for every process of this machine), read where things happen:

- job, transport T: a source -> map -> sink job of `--n` small dicts
  ({"id": i, "value": 2i}) on transport T ("ray": Ray queue actors between
  the task actors; "rpc": ZeroMQ queues hosted by the consuming actors).
  The rate is records over the time from the source's first record to the
  sink's last one (start-up and shutdown left out, and no record counted
  before it was produced). "start-up" is from `env.submit()` to the sink's
  first record; "submit returns" is how long `env.submit()` blocked.
- raw single / raw batch 100: `ray.util.queue.Queue` between two actors, one
  item per remote call and `put_nowait_batch`/`get_nowait_batch` of 100 (the
  producer and consumer of bench_ray_queue.py).
- service call over T: a task actor makes `--calls` synchronous calls to a
  service actor (the echo and caller of bench_service.py; a tenth more calls
  first, untimed); p50 of the round trips, timed in the caller.
- raw actor call: the same number of `ray.get(echo.process.remote(i))` from
  one actor to another (both plain Ray actors, the callee threaded like a
  service actor); p50, timed in the caller.

Best of `--repeat` runs each (rates: highest; times: lowest), then the
ratios the Ray backend aims for.

    python benchmarks/bench_ray_pipeline.py [--n 200000] [--n-single 2000] [--calls 300] [--repeat 3]
                                            [--transports ray,rpc] [--batch-size N] [--nodes 1|2]

`--nodes 2` runs on two Ray nodes of this machine (`ray.cluster_utils.Cluster`,
127.0.0.1): source and map on one, sink on the other.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

# Ray reads this when imported: bind the local Ray to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray
from ray.util.queue import Queue as RawQueue

from bench_ray_queue import RAW_BATCH, Consumer, Producer, _rate
from bench_service import Echo, TimedCaller
from sage.kernel import RayEnvironment
from sage.kernel.api.function import BatchFunction, SinkFunction

AIMS = {"job ray / raw single": 170.0, "job ray / raw batch 100": 2.0}
RATE_AIMS = {"job ray": 100_000.0, "job rpc": 250_000.0}
CALL_AIM = 1.5
"""The Ray backend's aims: ratios, records/s, and a service call's p50 over a raw actor call's."""


@ray.remote(num_cpus=0)
class Results:
    """Where actors report what they measured in their own process."""

    def __init__(self) -> None:
        self.reports: dict[str, Any] = {}

    def report(self, key: str, value: Any) -> None:
        self.reports[key] = value

    def take(self) -> dict[str, Any]:
        reports, self.reports = self.reports, {}
        return reports


class Records(BatchFunction):
    """Emits `n` small dicts, built in the source actor; reports when it built the first."""

    def __init__(self, n: int, results: Any) -> None:
        self.n = n
        self.i = 0
        self.results = results
        self.first = 0.0

    def execute(self) -> dict[str, int] | None:
        i = self.i
        if i == self.n:
            return None
        if i == 0:
            self.first = time.perf_counter()
        self.i = i + 1
        return {"id": i, "value": 2 * i}

    def close(self) -> None:
        ray.get(self.results.report.remote("first produced", self.first))


class TimedSink(SinkFunction):
    """Counts records, notes the first and last arrival, reports them when the stream ends."""

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
        ray.get(self.results.report.remote("sink", (self.count, self.first, self.last)))


class ReportMedian(SinkFunction):
    """Reports the median of the list of round-trip times it receives."""

    def __init__(self, results: Any) -> None:
        self.results = results

    def execute(self, samples: list[float]) -> None:
        ray.get(self.results.report.remote("p50", statistics.median(samples)))


@ray.remote(num_cpus=0, max_concurrency=2)
class RawEcho:
    """A plain actor with a thread pool, as a service actor has."""

    def process(self, value: Any) -> Any:
        return value


@ray.remote(num_cpus=0)
class RawCaller:
    def calls(self, echo: Any, n: int, warmup: int) -> float:
        """p50 seconds of `ray.get(echo.process.remote(i))`, after `warmup` untimed calls."""
        for i in range(warmup):
            ray.get(echo.process.remote(i))
        samples = []
        for i in range(n):
            started = time.perf_counter()
            if ray.get(echo.process.remote(i)) != i:
                raise AssertionError("the raw echo answered wrong")
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)


def placement(nodes: int, node: str) -> dict[str, Any]:
    return {"resources": {node: 1}} if nodes > 1 else {}


def job_run(n: int, transport: str, batch_size: int | None, nodes: int, results: Any) -> dict[str, float]:
    """Rate (records/s), start-up and submit time (s) of one source -> map -> sink job."""
    config: dict[str, Any] = {"transport": transport}
    if batch_size is not None:
        config["batch_size"] = batch_size
    env = RayEnvironment(f"bench-{transport}", config=config)
    (env.from_batch(Records, n, results, resources=placement(nodes, "node_a"))
        .map(lambda record: record, resources=placement(nodes, "node_a"))
        .sink(TimedSink, results, resources=placement(nodes, "node_b")))
    submitted = time.perf_counter()
    job = env.submit()
    returned = time.perf_counter()
    job.wait()
    reports = ray.get(results.take.remote())
    count, first, last = reports["sink"]
    if count != n:
        raise RuntimeError(f"lost records: {count} of {n}")
    return {"rate": n / (last - reports["first produced"]), "start-up": first - submitted,
            "submit returns": returned - submitted}


def service_p50(transport: str, calls: int, results: Any) -> float:
    """Median seconds of one synchronous service call from a task actor to a service actor."""
    env = RayEnvironment(f"bench-service-{transport}", config={"transport": transport})
    env.register_service("echo", Echo)
    env.from_batch([0]).map(TimedCaller, calls, calls // 10).sink(ReportMedian, results)
    env.submit(autostop=True)
    p50: float = ray.get(results.take.remote())["p50"]
    return p50


def raw_call_p50(calls: int) -> float:
    echo, caller = RawEcho.remote(), RawCaller.remote()
    try:
        p50: float = ray.get(caller.calls.remote(echo, calls, calls // 10))
        return p50
    finally:
        ray.kill(echo)
        ray.kill(caller)


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


def start_ray(nodes: int) -> Any:
    """A local Ray (one node), or a two-node cluster on this machine; returns the cluster to shut down."""
    if nodes == 1:
        ray.init(address="local", num_cpus=16, include_dashboard=False, log_to_driver=False)
        return None
    from ray._private.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    # Cluster() records its address where `ray.init()` without one looks: put that back as it was,
    # so that no other Ray user of the machine joins this cluster.
    current = Path(get_ray_address_file(None))
    before = current.read_text() if current.exists() else None
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 8, "resources": {"node_a": 100}, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    if before is None:
        current.unlink(missing_ok=True)
    else:
        current.write_text(before)
    cluster.add_node(num_cpus=8, resources={"node_b": 100}, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="records per job (multiple of 100)")
    parser.add_argument("--n-single", type=int, default=2_000, help="records for raw one-at-a-time")
    parser.add_argument("--calls", type=int, default=300, help="synchronous calls per service measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--transports", default="ray,rpc")
    parser.add_argument("--batch-size", type=int, default=None, help="router batch size (default: the job's)")
    parser.add_argument("--nodes", type=int, choices=[1, 2], default=1)
    args = parser.parse_args()
    if args.n % RAW_BATCH:
        parser.error(f"--n must be a multiple of {RAW_BATCH}")
    cluster = start_ray(args.nodes)
    rates: dict[str, float] = {}
    startups: dict[str, dict[str, float]] = {}
    calls: dict[str, float] = {}
    transports = args.transports.split(",")
    try:
        results = Results.remote()
        for _ in range(args.repeat):
            for transport in transports:
                name = f"job {transport}"
                run = job_run(args.n, transport, args.batch_size, args.nodes, results)
                rates[name] = max(rates.get(name, 0.0), run["rate"])
                best = startups.setdefault(transport, {})
                for key in ("start-up", "submit returns"):
                    best[key] = min(best.get(key, float("inf")), run[key])
                p50 = service_p50(transport, args.calls, results)
                calls[transport] = min(calls.get(transport, float("inf")), p50)
            for name, rate in raw_rates(args.n, args.n_single).items():
                rates[name] = max(rates.get(name, 0.0), rate)
            calls["raw actor call"] = min(calls.get("raw actor call", float("inf")), raw_call_p50(args.calls))
        ray.kill(results)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    print(f"cpus: {os.cpu_count()}  nodes: {args.nodes}  records: {args.n} (raw single: {args.n_single})  "
          f"repeat: {args.repeat}  load: {os.getloadavg()[0]:.1f}")
    for name, rate in rates.items():
        aim = f"   (aim >= {RATE_AIMS[name]:,.0f})" if name in RATE_AIMS else ""
        print(f"{name:>14}: {rate:12,.0f} records/s{aim}")
    for transport, times in startups.items():
        print(f"job {transport}: submit returns in {times['submit returns']:.2f} s, "
              f"first record at the sink {times['start-up']:.2f} s after submit")
    for name, raw_name in itertools.product([n for n in rates if n.startswith("job")],
                                            [n for n in rates if n.startswith("raw")]):
        ratio = f"{name} / {raw_name}"
        aim = f"   (aim >= {AIMS[ratio]:g}x)" if ratio in AIMS else ""
        print(f"{ratio}: {rates[name] / rates[raw_name]:.1f}x{aim}")
    raw_call = calls.pop("raw actor call")
    print(f"raw actor call, actor to actor: p50 {raw_call * 1e6:,.0f} us")
    for transport, p50 in calls.items():
        print(f"sync service call over {transport}: p50 {p50 * 1e6:,.0f} us = {p50 / raw_call:.2f}x a raw actor call "
              f"(aim <= {CALL_AIM:g}x)")


if __name__ == "__main__":
    main()
