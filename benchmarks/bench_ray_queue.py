"""Actor-to-actor packets/s through RayQueueDescriptor against raw ray.util.queue.Queue.

One producer actor and one consumer actor on a local Ray bound to 127.0.0.1. The
producer builds its small Packets ({"id": i, "value": 2i}) before the clock starts;
the clock runs on the driver from starting both actors' loops until both are done.

- descriptor batch B: the producer `put_many`s batches of B packets (blocking while
  the queue is full; bounded at `--maxsize`), then a StopSignal; the consumer
  `get_many(1024)`s until the StopSignal. B is each of `--batches` (256 is
  BaseRouter's default batch size).
- raw single: `ray.util.queue.Queue` (same maxsize), `put` and `get` one packet at a
  time; fewer packets (`--n-single`), since each is a remote call.
- raw batch: `put_nowait_batch` / `get_nowait_batch` of 100. These are all-or-nothing
  and never block, so the raw queue is unbounded (the producer never meets Full) and the
  consumer falls back to one blocking `get()` when fewer than 100 are queued.

Each put or get is a blocking remote call, so a rate is about items per call divided
by the round trip of one call; the script prints that round trip (a no-op call on an
async actor) next to each rate (best of `--repeat`) and the descriptor/raw ratios.

    python benchmarks/bench_ray_queue.py [--n 200000] [--n-single 2000] [--batches 256,1024]
                                         [--maxsize 10000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

# Ray reads this when imported: bind the local Ray to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray
from ray.util.queue import Queue as RawQueue

from sage.kernel.runtime.communication import Packet, StopSignal
from sage.kernel.runtime.communication.queue_descriptor import RayQueueDescriptor
from sage.kernel.runtime.communication.queue_descriptor.ray_queue_descriptor import (
    shutdown_ray_queues,
)

RAW_BATCH = 100
GET_MANY = 1024
TIMEOUT = 60.0
ROUND_TRIPS = 300


@ray.remote(num_cpus=0)
class NoOp:
    async def noop(self) -> None:
        """A remote call that does nothing: its round trip is the floor of every put and get."""


@ray.remote(num_cpus=0)
class Producer:
    def prepare(self, n: int) -> None:
        self.packets = [Packet({"id": i, "value": i * 2}) for i in range(n)]

    def via_descriptor(self, descriptor: RayQueueDescriptor, batch: int) -> None:
        packets = self.packets
        for start in range(0, len(packets), batch):
            descriptor.put_many(packets[start : start + batch])
        descriptor.put(StopSignal(source="producer"))

    def raw_single(self, raw: RawQueue) -> None:
        for packet in self.packets:
            raw.put(packet)

    def raw_batch(self, raw: RawQueue) -> None:
        packets = self.packets
        for start in range(0, len(packets), RAW_BATCH):
            raw.put_nowait_batch(packets[start : start + RAW_BATCH])


@ray.remote(num_cpus=0)
class Consumer:
    def via_descriptor(self, descriptor: RayQueueDescriptor) -> int:
        received = 0
        while True:
            for item in descriptor.get_many(GET_MANY, timeout=TIMEOUT):
                if type(item) is StopSignal:
                    return received
                received += 1

    def raw_single(self, raw: RawQueue, n: int) -> int:
        for _ in range(n):
            raw.get(timeout=TIMEOUT)
        return n

    def raw_batch(self, raw: RawQueue, n: int) -> int:
        received = 0
        while received < n:
            try:
                received += len(raw.get_nowait_batch(RAW_BATCH))
            except queue.Empty:
                raw.get(timeout=TIMEOUT)  # block instead of spinning until more arrive
                received += 1
        return received


def _rate(n: int, start_producer: Callable[[], Any], start_consumer: Callable[[], Any]) -> float:
    """Packets/s from starting both actors' loops until both are done; fails on a lost packet."""
    started = time.perf_counter()
    producing, consuming = start_producer(), start_consumer()
    received = ray.get(consuming, timeout=600)
    ray.get(producing, timeout=600)
    elapsed = time.perf_counter() - started
    if received != n:
        raise RuntimeError(f"lost packets: {received} of {n}")
    return n / elapsed


def _round_trip_us() -> float:
    actor = NoOp.remote()
    ray.get(actor.noop.remote())
    started = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        ray.get(actor.noop.remote())
    elapsed = time.perf_counter() - started
    ray.kill(actor)
    return elapsed / ROUND_TRIPS * 1e6


def run(args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """Best rate of each run (packets/s) and the no-op round trip (microseconds)."""
    producer, consumer = Producer.remote(), Consumer.remote()
    best: dict[str, float] = {}
    namespace = f"bench-{uuid.uuid4().hex[:8]}"

    def record(name: str, rate: float) -> None:
        best[name] = max(best.get(name, 0.0), rate)

    try:
        round_trip = _round_trip_us()
        for _ in range(args.repeat):
            ray.get(producer.prepare.remote(args.n))
            for batch in args.batches:
                descriptor = RayQueueDescriptor(maxsize=args.maxsize, namespace=namespace)
                descriptor.qsize()  # create the queue actor before the clock starts
                rate = _rate(
                    args.n,
                    lambda d=descriptor, b=batch: producer.via_descriptor.remote(d, b),
                    lambda d=descriptor: consumer.via_descriptor.remote(d),
                )
                record(f"descriptor batch {batch}", rate)
                descriptor.close()

            raw = RawQueue()
            rate = _rate(args.n, lambda q=raw: producer.raw_batch.remote(q),
                         lambda q=raw: consumer.raw_batch.remote(q, args.n))
            record(f"raw batch {RAW_BATCH}", rate)
            raw.shutdown(force=True)

            raw = RawQueue(maxsize=args.maxsize)
            ray.get(producer.prepare.remote(args.n_single))
            rate = _rate(
                args.n_single,
                lambda q=raw: producer.raw_single.remote(q),
                lambda q=raw: consumer.raw_single.remote(q, args.n_single),
            )
            record("raw single", rate)
            raw.shutdown(force=True)
    finally:
        shutdown_ray_queues(namespace)
        ray.kill(producer)
        ray.kill(consumer)
    return best, round_trip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="packets per batched run (multiple of 100)")
    parser.add_argument("--n-single", type=int, default=2_000, help="packets for raw one-at-a-time")
    parser.add_argument("--batches", default="256,1024", help="put_many batch sizes, comma-separated")
    parser.add_argument("--maxsize", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.n % RAW_BATCH:
        parser.error(f"--n must be a multiple of {RAW_BATCH}")
    args.batches = [int(b) for b in args.batches.split(",")]
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        rates, round_trip = run(args)
    finally:
        ray.shutdown()
    print(f"cpus: {os.cpu_count()}  packets: {args.n} (raw single: {args.n_single})  maxsize: {args.maxsize}")
    print(f"no-op remote call round trip: {round_trip:,.0f} us")
    for name, rate in rates.items():
        print(f"{name:>22}: {rate:12,.0f} packets/s")
    for name, rate in rates.items():
        if name.startswith("descriptor"):
            for raw_name, raw_rate in rates.items():
                if raw_name.startswith("raw"):
                    print(f"{name} / {raw_name}: {rate / raw_rate:.1f}x")

if __name__ == "__main__":
    main()
