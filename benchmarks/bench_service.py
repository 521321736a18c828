"""Service call round trip: `call_service` on the local backend against two raw `queue.Queue`s.

Two runs in the same process, one caller each, one request in flight at a time:

- sage: a map function calls `self.call_service("echo", i)` `--n` times on a
  registered `BaseService` whose `process` returns its argument (the echo
  check runs on every call); each round trip is timed with `perf_counter`;
- raw: a server thread answers `(i, value)` tuples read from one
  `queue.Queue` into another, and a client thread puts and gets `--n` times.

Both runs warm up first (`--warmup` calls, untimed). Prints, per run, the
round-trip p50 and p99 in microseconds and calls per second, then the ratios
sage/raw. The best of `--repeat` runs is reported for each.

    python benchmarks/bench_service.py [--n 20000] [--warmup 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService

_END = object()


class Echo(BaseService):
    def process(self, value: Any) -> Any:
        return value


class TimedCaller(MapFunction):
    """Makes `warmup + n` synchronous calls; returns the round-trip times of the last `n`."""

    def __init__(self, n: int, warmup: int) -> None:
        self.n = n
        self.warmup = warmup

    def execute(self, _: Any) -> list[float]:
        call = self.call_service
        clock = time.perf_counter
        for i in range(self.warmup):
            call("echo", i)
        samples = []
        for i in range(self.n):
            started = clock()
            answer = call("echo", i)
            samples.append(clock() - started)
            if answer != i:
                raise AssertionError(f"echo answered {answer!r} to {i!r}")
        return samples


def run_sage(n: int, warmup: int) -> list[float]:
    out: list[list[float]] = []
    env = LocalEnvironment("bench-service")
    env.register_service("echo", Echo)
    env.from_batch([0]).map(TimedCaller, n, warmup).sink(out.append)
    env.submit(autostop=True)
    return out[0]


def run_raw(n: int, warmup: int) -> list[float]:
    requests: queue.Queue[Any] = queue.Queue()
    responses: queue.Queue[Any] = queue.Queue()

    def serve() -> None:
        get, put = requests.get, responses.put
        while True:
            item = get()
            if item is _END:
                return
            put(item)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    put, get, clock = requests.put, responses.get, time.perf_counter
    for i in range(warmup):
        put((i, i))
        get()
    samples = []
    for i in range(n):
        started = clock()
        put((i, i))
        request_id, answer = get()
        samples.append(clock() - started)
        if request_id != i or answer != i:
            raise AssertionError(f"raw echo answered {answer!r} to {i!r}")
    put(_END)
    server.join()
    return samples


def summarize(samples: list[float]) -> tuple[float, float, float]:
    """(p50 us, p99 us, calls per second) of one run."""
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6
    return p50, p99, len(samples) / sum(samples)


def best(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=2000, help="untimed calls before each run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind; the best p50 is kept")
    args = parser.parse_args()

    sage_runs, raw_runs = [], []
    for _ in range(args.repeat):
        raw_runs.append(summarize(run_raw(args.n, args.warmup)))
        sage_runs.append(summarize(run_sage(args.n, args.warmup)))
    sage, raw = best(sage_runs), best(raw_runs)
    print(f"{'':6} {'p50 us':>9} {'p99 us':>9} {'calls/s':>10}   ({args.n} calls, best of {args.repeat})")
    for label, (p50, p99, rate) in (("sage", sage), ("raw", raw)):
        print(f"{label:6} {p50:9.1f} {p99:9.1f} {rate:10.0f}")
    print(f"ratio  sage/raw p50 {sage[0] / raw[0]:.2f}x, p99 {sage[1] / raw[1]:.2f}x, "
          f"calls/s raw/sage {raw[2] / sage[2]:.2f}x")


if __name__ == "__main__":
    main()
