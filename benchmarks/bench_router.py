"""Router throughput against the raw single-item queue hand-off.

Two runs between a producer thread and a consumer thread, in the same process:

- router: the producer wraps each small dict in a `Packet` and routes it with
  `BaseRouter.send()` to one `PythonQueueDescriptor`; the consumer drains it
  with `get_many()` until the `StopSignal` the router sends last.
- raw: the producer `put`s each dict on a plain `queue.Queue`, the consumer
  `get`s them one at a time (the primitive a naive runtime would use).

Both queues are bounded alike (`--maxsize`), so backpressure is part of both
runs. Prints both rates (items per second) and router/raw.

    python benchmarks/bench_router.py [--n 1000000] [--maxsize 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from typing import Callable

from sage.kernel.runtime.communication import BaseRouter, Connection, Packet, PythonQueueDescriptor, StopSignal

_END = object()
GET_MANY = 1024


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


def run_router(payloads: list[dict[str, int]], maxsize: int) -> float:
    """Seconds to route every payload through BaseRouter to a get_many consumer."""
    descriptor = PythonQueueDescriptor(maxsize=maxsize)
    router = BaseRouter({0: {0: Connection(0, 0, "sink_0", descriptor)}})

    def produce() -> None:
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
                received += 1

    try:
        return _timed_handoff(produce, consume, len(payloads))
    finally:
        descriptor.close()


def run_raw(payloads: list[dict[str, int]], maxsize: int) -> float:
    """Seconds to hand every payload over with one queue.Queue put/get per item."""
    q: queue.Queue = queue.Queue(maxsize)

    def produce() -> None:
        put = q.put
        for payload in payloads:
            put(payload)
        put(_END)

    def consume() -> int:
        received = 0
        get = q.get
        while get(timeout=30) is not _END:
            received += 1
        return received

    return _timed_handoff(produce, consume, len(payloads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="packets per run (default 1,000,000)")
    parser.add_argument("--maxsize", type=int, default=10_000, help="queue bound for both runs (0 = unbounded)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the best is reported")
    args = parser.parse_args()

    payloads = _payloads(args.n)
    router_s = min(run_router(payloads, args.maxsize) for _ in range(args.repeat))
    raw_s = min(run_raw(payloads, args.maxsize) for _ in range(args.repeat))
    router_rate = args.n / router_s
    raw_rate = args.n / raw_s
    print(f"packets: {args.n:,}  maxsize: {args.maxsize}  best of {args.repeat}")
    print(f"router (BaseRouter + PythonQueueDescriptor, get_many): {router_rate:>12,.0f} packets/s")
    print(f"raw (queue.Queue put/get per item):                    {raw_rate:>12,.0f} items/s")
    print(f"router / raw: {router_rate / raw_rate:.2f}x")


if __name__ == "__main__":
    main()
