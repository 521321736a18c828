"""Router throughput against the raw queue hand-off it is built on.

Runs between a producer thread and a consumer thread, in the same process:

- router send: the producer wraps each small dict in a `Packet` and routes it
  with `BaseRouter.send()` (the seed's per-record API) to one
  `PythonQueueDescriptor`; the consumer drains the batches with `get_many()`
  until the `StopSignal` the router sends last;
- router send_batch: the same records handed to `BaseRouter.send_batch()` in
  runs of 256 (what the runtime's operators do);
- raw item: the producer `put`s each dict on a plain `queue.Queue`, the
  consumer `get`s them one at a time (the primitive a naive runtime would use);
- raw list: the producer `put`s lists of 256 dicts, the consumer `get`s lists
  (the batched primitive).

Every queue is bounded to `--maxsize` records (a raw list counts as one item
of 256, so its queue holds maxsize // 256 lists), so backpressure is part of
every run. Prints each rate (records per second) and router/raw ratios.

    python benchmarks/bench_router.py [--n 1000000] [--maxsize 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections.abc import Callable

from sage.kernel.runtime.communication import BaseRouter, Batch, Connection, Packet, PythonQueueDescriptor, StopSignal

_END = object()
GET_MANY = 64
RUN = 256


def _payloads(n: int) -> list[dict[str, int]]:
    # Built before timing: both runs move the same objects.
    return [{"id": i, "value": i * 2} for i in range(n)]


def _timed_handoff(produce: Callable[[], None], consume: Callable[[], int], n: int) -> float:
    """Seconds from the start of `produce()` until `consume()` (in its own thread) returned.

    `consume` returns how many items it received; anything but `n` is an error.
    """
    received: list[int] = []
    consumer = threading.Thread(target=lambda: received.append(consume()))
    consumer.start()
    started = time.perf_counter()
    produce()
    consumer.join(timeout=120)
    elapsed = time.perf_counter() - started
    if consumer.is_alive() or received != [n]:
        raise RuntimeError(f"hand-off lost items: received {received} of {n}")
    return elapsed


def run_router(payloads: list[dict[str, int]], maxsize: int, runs: bool) -> float:
    """Seconds to route every payload through BaseRouter (one by one, or in runs) to a get_many consumer."""
    descriptor = PythonQueueDescriptor(maxsize=maxsize)
    router = BaseRouter({0: {0: Connection(0, 0, "sink_0", descriptor)}})

    def produce() -> None:
        if runs:
            send_batch = router.send_batch
            for start in range(0, len(payloads), RUN):
                send_batch(payloads[start:start + RUN])
        else:
            send = router.send
            for payload in payloads:
                send(Packet(payload))
        router.send_stop_signal(StopSignal(source="bench"))

    def consume() -> int:
        received = 0
        while True:
            for item in descriptor.get_many(GET_MANY, timeout=30):
                if type(item) is StopSignal:
                    return received
                received += len(item.payloads) if type(item) is Batch else 1

    try:
        return _timed_handoff(produce, consume, len(payloads))
    finally:
        descriptor.close()


def run_raw(payloads: list[dict[str, int]], maxsize: int, lists: bool) -> float:
    """Seconds to hand every payload over with one queue.Queue put/get per item, or per list of RUN."""
    q: queue.Queue = queue.Queue(max(1, maxsize // RUN) if lists and maxsize else maxsize)

    def produce() -> None:
        put = q.put
        if lists:
            for start in range(0, len(payloads), RUN):
                put(payloads[start:start + RUN])
        else:
            for payload in payloads:
                put(payload)
        put(_END)

    def consume() -> int:
        received = 0
        get = q.get
        while (item := get(timeout=30)) is not _END:
            received += len(item) if lists else 1
        return received

    return _timed_handoff(produce, consume, len(payloads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="packets per run (default 1,000,000)")
    parser.add_argument("--maxsize", type=int, default=10_000, help="queue bound for both runs (0 = unbounded)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the best is reported")
    args = parser.parse_args()

    payloads = _payloads(args.n)
    best = {"send": float("inf"), "send_batch": float("inf"), "item": float("inf"), "list": float("inf")}
    for _ in range(args.repeat):  # interleaved, so machine noise hits every path alike
        best["send"] = min(best["send"], run_router(payloads, args.maxsize, runs=False))
        best["send_batch"] = min(best["send_batch"], run_router(payloads, args.maxsize, runs=True))
        best["item"] = min(best["item"], run_raw(payloads, args.maxsize, lists=False))
        best["list"] = min(best["list"], run_raw(payloads, args.maxsize, lists=True))
    rate = {name: args.n / seconds for name, seconds in best.items()}
    print(f"records: {args.n:,}  maxsize: {args.maxsize}  best of {args.repeat}")
    print(f"router send(Packet) per record:          {rate['send']:>12,.0f} records/s")
    print(f"router send_batch, runs of {RUN}:          {rate['send_batch']:>12,.0f} records/s")
    print(f"raw queue.Queue put/get per item:        {rate['item']:>12,.0f} records/s")
    print(f"raw queue.Queue put/get lists of {RUN}:    {rate['list']:>12,.0f} records/s")
    print(f"router send / raw item:        {rate['send'] / rate['item']:.2f}x")
    print(f"router send_batch / raw list:  {rate['send_batch'] / rate['list']:.2f}x")


if __name__ == "__main__":
    main()
