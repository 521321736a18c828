"""Calls of 20 ms: map_async(capacity=c) against a plain map with parallelism=c and a hand-written asyncio loop.

Every path makes the same call, `await asyncio.sleep(0.02)`: a model server
that answers in 20 ms and costs no CPU here, so what each path adds on top
of the wait shows. For each c:

- map_async: `LocalEnvironment`, `from_batch(range(n)).map_async(call,
  capacity=c).sink(Count)`, timed from `submit()` to the end of `wait()`;
- threads: `from_batch(range(n)).map(Call, parallelism=c).sink(Count)`, each
  map instance (a thread) running the same coroutine on an event loop of its
  own; c is capped at `--max-threads` (64 by default): beyond that, threads
  stop being a way to wait (hundreds of tasks, each a thread with its queue,
  for work that is only waiting), and the run says so;
- asyncio: one event loop, `asyncio.gather` over all n calls, each behind an
  `asyncio.Semaphore(c)`: the ceiling, nothing but the calls.

n is chosen so that the ceiling takes about `--seconds` (c / 0.02 calls per
second). Every run checks it saw all n results. Prints calls per second, the
ratio to the ceiling, and the ratio map_async / threads; the best of
`--repeat` runs.

    python benchmarks/bench_async.py [--capacities 1 8 64 256] [--seconds 2] [--repeat 2] [--max-threads 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction, SinkFunction

CALL_SECONDS = 0.02


async def call(x: int) -> int:
    """The call every path makes: a 20 ms wait for an answer."""
    await asyncio.sleep(CALL_SECONDS)
    return x


class Call(MapFunction):
    """The same coroutine for a plain map: run to completion on this instance's own event loop."""

    def open(self) -> None:
        self.loop = asyncio.new_event_loop()

    def execute(self, x: int) -> int:
        return self.loop.run_until_complete(call(x))

    def close(self) -> None:
        self.loop.close()


class Count(SinkFunction):
    """Counts what it receives into a shared list (one slot per instance)."""

    def __init__(self, out: list[int]) -> None:
        self.out, self.seen = out, 0

    def execute(self, data: int) -> None:
        self.seen += 1

    def close(self) -> None:
        self.out.append(self.seen)


def run_map_async(n: int, capacity: int) -> float:
    out: list[int] = []
    env = LocalEnvironment("bench-async")
    env.from_batch(range(n)).map_async(call, capacity=capacity).sink(Count, out)
    return _timed(env, out, n, "map_async")


def run_threads(n: int, parallelism: int) -> float:
    out: list[int] = []
    env = LocalEnvironment("bench-threads")
    env.from_batch(range(n)).map(Call, parallelism=parallelism).sink(Count, out)
    return _timed(env, out, n, "threads")


def _timed(env: LocalEnvironment, out: list[int], n: int, name: str) -> float:
    started = time.perf_counter()
    env.submit(autostop=True)
    elapsed = time.perf_counter() - started
    if sum(out) != n:
        raise RuntimeError(f"{name} run saw {sum(out)} results, expected {n}")
    return elapsed


def run_asyncio(n: int, capacity: int) -> float:
    async def main() -> list[Any]:
        limit = asyncio.Semaphore(capacity)

        async def one(x: int) -> int:
            async with limit:
                return await call(x)

        return await asyncio.gather(*(one(x) for x in range(n)))

    started = time.perf_counter()
    results = asyncio.run(main())
    elapsed = time.perf_counter() - started
    if len(results) != n:
        raise RuntimeError(f"asyncio run saw {len(results)} results, expected {n}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", type=int, nargs="+", default=[1, 8, 64, 256], help="values of c")
    parser.add_argument("--seconds", type=float, default=2.0, help="about how long the ceiling runs per c")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path; the best is reported")
    parser.add_argument("--max-threads", type=int, default=64, help="most map instances for the threads path")
    args = parser.parse_args()

    print(f"calls of {CALL_SECONDS * 1000:.0f} ms; calls/s (best of {args.repeat}) and ratios to the asyncio ceiling")
    print(f"{'c':>5} {'n':>7} {'asyncio':>10} {'map_async':>10} {'ratio':>6} {'threads':>10} {'ratio':>6} "
          f"{'map_async/threads':>18}")
    for capacity in args.capacities:
        n = max(50, round(capacity / CALL_SECONDS * args.seconds))
        threads = min(capacity, args.max_threads)
        rates = {
            "asyncio": n / min(run_asyncio(n, capacity) for _ in range(args.repeat)),
            "map_async": n / min(run_map_async(n, capacity) for _ in range(args.repeat)),
            "threads": n / min(run_threads(n, threads) for _ in range(args.repeat)),
        }
        ceiling = rates["asyncio"]
        note = f"  (threads capped at {threads})" if threads < capacity else ""
        print(f"{capacity:>5} {n:>7} {ceiling:>10,.0f} {rates['map_async']:>10,.0f} "
              f"{rates['map_async'] / ceiling:>5.2f}x {rates['threads']:>10,.0f} {rates['threads'] / ceiling:>5.2f}x "
              f"{rates['map_async'] / rates['threads']:>17.2f}x{note}")


if __name__ == "__main__":
    main()
