"""What checkpoints cost: throughput with and without them, and how long a large keyed state takes.

1. bench_pipeline's work (from_batch -> map -> sink over small dicts) on
   `LocalEnvironment`, without checkpoints and with `checkpoint_interval`
   1 s, over `--n` records `--passes` times (runs long enough for several
   checkpoints), rounds interleaved so machine noise hits both alike; prints
   the median rates and the cost (1 - with/without).
2. A keyed running count over `--keys` distinct keys (keyby -> map with a
   dict of counts, parallelism 2), each key seen 10 times: checkpoints every
   0.2 s; prints how long the periodic checkpoints took once the state held
   every key (trigger to complete: barriers through the pipeline, the state
   pickled, sent to the driver and stored in SQLite), and their size.

    python benchmarks/bench_checkpoint.py [--n 1000000] [--passes 6] [--rounds 3] [--keys 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction, SinkFunction
from sage.kernel.runtime.checkpoint import CheckpointStore
from sage.kernel.runtime.checkpoint.snapshot import encode


def transform(record: dict[str, int]) -> int:
    return record["value"] * 3 + 1


class Sum(SinkFunction):
    def __init__(self) -> None:
        self.total = 0

    def execute(self, data: int) -> None:
        self.total += data

    def get_state(self) -> int:
        return self.total

    def restore_state(self, state: int) -> None:
        self.total = state


def pipeline_rate(records: list[dict[str, int]], checkpoints: str | None) -> tuple[float, int]:
    """(records/s, checkpoints completed)."""
    config: dict[str, Any] = {"checkpoint_interval": 1.0, "checkpoint_dir": checkpoints} if checkpoints else {}
    env = LocalEnvironment("bench-checkpoint", config=config)
    env.from_batch(records).map(transform).sink(Sum)
    started = time.perf_counter()
    job = env.submit(autostop=True, resume=False)
    elapsed = time.perf_counter() - started
    own = job.metrics()["job"]["checkpoints"]
    return len(records) / elapsed, own["completed"] if own else 0


class KeyedCount(MapFunction):
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, key: str) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def get_state(self) -> dict[str, int]:
        return self.counts

    def restore_state(self, state: dict[str, int]) -> None:
        self.counts = state


def keyed_checkpoints(keys: int, directory: str) -> list[tuple[float, int]]:
    """(seconds, bytes) of the checkpoints completed after every key was in the state."""
    env = LocalEnvironment("bench-keyed-state", config={"checkpoint_interval": 0.2, "checkpoint_dir": directory})
    source = [f"key-{i}" for i in range(keys)] * 10
    env.from_batch(source).keyby(lambda k: k).map(KeyedCount, parallelism=2).sink(lambda x: None)
    env.submit(autostop=True, resume=False)
    full = len(encode({"function": {f"key-{i}": 10 for i in range(keys)}}))
    return [(i.duration, i.bytes) for i in CheckpointStore(directory).list()
            if i.job == "bench-keyed-state" and i.status == "complete" and i.duration is not None and i.bytes >= full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="records per pipeline run")
    parser.add_argument("--passes", type=int, default=6, help="times the source goes over the records")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys in the keyed state")
    args = parser.parse_args()

    records = [{"id": i, "value": i % 1000} for i in range(args.n)] * args.passes
    without, with_, taken = [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.rounds):
            without.append(pipeline_rate(records, None)[0])
            rate, completed = pipeline_rate(records, directory)
            with_.append(rate)
            taken.append(completed)
        keyed = keyed_checkpoints(args.keys, directory)
    a, b = statistics.median(without), statistics.median(with_)
    print(f"from_batch -> map -> sink, {len(records):,} records, median of {args.rounds} interleaved rounds")
    print(f"  without checkpoints          {a:>12,.0f} records/s")
    print(f"  checkpoint every 1 s          {b:>12,.0f} records/s  ({min(taken)}-{max(taken)} checkpoints a run)")
    print(f"  cost                          {100 * (1 - b / a):>11.1f} %")
    if keyed:
        durations = sorted(d for d, _ in keyed)
        print(f"keyed state of {args.keys:,} keys (2 instances): {len(keyed)} checkpoints, "
              f"median {statistics.median(durations) * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms, "
              f"{max(size for _, size in keyed) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
