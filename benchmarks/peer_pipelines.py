"""The three pipelines of compare_peers.py, written once per system.

Pipelines (records are built before timing; every run checks what its sink computed):

- map: N small dicts `{"id": i, "value": i % 1000}` -> map `value * 3 + 1` -> sink adding it up;
- keyed: N small dicts `{"id": i, "key": "k<i % 1000>"}` -> key by `key` -> running count per key
  (2 parallel instances where the system has them) -> sink adding up the counts;
- wordcount: N lines of 8 words (from 1,000 words) -> flatmap `str.split` -> key by word -> running
  count per word (2 instances) -> sink adding up the counts. Rates count words, not lines.

Systems:

- sage: `LocalEnvironment` (threads in this process), transport "python" (in-process queues, the
  default) or "rpc" (every edge a ZeroMQ queue on 127.0.0.1); `from_batch(list)` as the source, the
  job's default config; timed from `submit()` to the end of `wait()`;
- bytewax: `run_main` (one worker, as `python -m bytewax.run` starts it by default), `TestingSource`
  with its default `batch_size=1`, `key_on` + `stateful_map` for the counts; timed around `run_main`;
- threads: a hand-written pipeline, one thread per stage and per counting instance, linked by bounded
  `queue.Queue`s (4,096 records each), counts partitioned by Python's `hash()` (salted per process,
  which one process can afford); `batch=1` puts one record per `put`, `batch=100` lists of 100;
- fused: the same work in one loop (no queues, no threads): the floor nothing can beat.

Every sink does the same per-record work (one Python addition per record, in a loop), whether the
system hands it records one by one (sage, threads) or in lists (Bytewax's `write_batch`).
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _support import time_threads

PIPELINES = ("map", "keyed", "wordcount")
KEYS = 1000
WORDS_PER_LINE = 8
PARALLELISM = 2
QUEUE_RECORDS = 4096
"""Capacity of every queue in records: sage's default `queue_maxsize`, and the hand-written queues'."""

_END = object()


# --------------------------------------------------------------------------- data and checks
def make_input(pipeline: str, n: int) -> list[Any]:
    """The source records of `pipeline`: n dicts, or n lines of WORDS_PER_LINE words."""
    if pipeline == "map":
        return [{"id": i, "value": i % 1000} for i in range(n)]
    keys = [f"k{i}" for i in range(KEYS)]
    if pipeline == "keyed":
        return [{"id": i, "key": keys[i % KEYS]} for i in range(n)]
    if pipeline == "wordcount":
        words = [f"w{i}" for i in range(KEYS)]
        # A fixed stride through the vocabulary: every word is seen about as often, in a mixed order.
        return [" ".join(words[(7 * (line * WORDS_PER_LINE + j)) % KEYS] for j in range(WORDS_PER_LINE))
                for line in range(n)]
    raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINES)}")


def records_moved(pipeline: str, n: int) -> int:
    """What a rate counts: source records, or words for the word count."""
    return n * WORDS_PER_LINE if pipeline == "wordcount" else n


def expected(pipeline: str, data: list[Any]) -> int:
    """The sum every sink of `pipeline` must compute over `data`."""
    if pipeline == "map":
        return sum(transform(r) for r in data)
    counts: dict[str, int] = {}
    for key in (w for line in data for w in line.split()) if pipeline == "wordcount" else (r["key"] for r in data):
        counts[key] = counts.get(key, 0) + 1
    return sum(c * (c + 1) // 2 for c in counts.values())  # the running counts 1..c of each key, added up


def _check(system: str, pipeline: str, got: int, data: list[Any]) -> None:
    want = expected(pipeline, data)
    if got != want:
        raise RuntimeError(f"{system} {pipeline}: the sink computed {got}, expected {want}")


def transform(record: dict[str, int]) -> int:
    """The map pipeline's work on one record."""
    return record["value"] * 3 + 1


def record_key(record: dict[str, Any]) -> str:
    return record["key"]


def word_key(word: str) -> str:
    return word


def split_line(line: str) -> list[str]:
    return line.split()


# --------------------------------------------------------------------------- sage
class Count:
    """Running count per key: (key, how many records of the key so far). A sage MapFunction (see sage_classes)."""

    def __init__(self, key_of: Callable[[Any], str]) -> None:
        self.key_of = key_of
        self.counts: dict[str, int] = {}

    def execute(self, record: Any) -> tuple[str, int]:
        key = self.key_of(record)
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        return key, count


class Total:
    """Adds up its records (or their item `index`), times its first to its last record, and writes
    {"total", "count", "seconds"} to `path` when the stream ends. A sage SinkFunction (see sage_classes)."""

    def __init__(self, path: str, index: int | None) -> None:
        self.path = path
        self.index = index
        self.total = self.count = 0
        self.first = self.last = 0.0

    def execute(self, data: Any) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1
        self.total += data if self.index is None else data[self.index]

    def close(self) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"total": self.total, "count": self.count, "seconds": self.last - self.first}, f)


def sage_classes() -> tuple[type, type]:
    """Count and Total as sage function classes (imported here, so a Bytewax run never imports sage)."""
    from sage.kernel.api.function import MapFunction, SinkFunction

    return type("Count", (Count, MapFunction), {}), type("Total", (Total, SinkFunction), {})


def run_sage(pipeline: str, data: list[Any], backend: str = "local", transport: str = "python") -> float:
    """Seconds of `pipeline` on sage-kernel.

    On the local backend: from submit() to the end of wait(). On Ray (every task an actor, in a process
    of its own): from the sink's first record to its last, so Ray's start-up and the actors' are left
    out (queues in between hold far fewer records than a run moves, so the sink sees the steady rate).
    """
    from sage.kernel import LocalEnvironment, RayEnvironment

    # Ray's workers unpickle this module's functions by importing it: they inherit this variable.
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    count, total = sage_classes()
    config = {"transport": transport}
    if backend == "local":
        env: Any = LocalEnvironment(f"peer-{pipeline}", config={**config, "queue_maxsize": QUEUE_RECORDS})
    else:
        env = RayEnvironment(f"peer-{pipeline}", config=config)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "total.json")
        stream = env.from_batch(data)
        if pipeline == "map":
            stream.map(transform).sink(total, path, None)
        elif pipeline == "keyed":
            stream.keyby(record_key).map(count, record_key, parallelism=PARALLELISM).sink(total, path, 1)
        else:
            words = stream.flatmap(split_line).keyby(word_key)
            words.map(count, word_key, parallelism=PARALLELISM).sink(total, path, 1)
        started = time.perf_counter()
        env.submit(autostop=True)
        elapsed = time.perf_counter() - started
        with open(path, encoding="utf-8") as f:
            sink = json.load(f)
    _check(f"sage {backend} {transport}", pipeline, sink["total"], data)
    return elapsed if backend == "local" else sink["seconds"] * records_moved(pipeline, len(data)) / (sink["count"] - 1)


# --------------------------------------------------------------------------- bytewax
def bytewax_version() -> str | None:
    """The installed Bytewax's version, or None when it is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("bytewax")
    except PackageNotFoundError:
        return None


def run_bytewax(pipeline: str, data: list[Any], batch_size: int = 1) -> float:
    """Seconds `run_main` takes for `pipeline` (one worker; `TestingSource(batch_size=1)` is Bytewax's default)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import TestingSource, run_main

    index = None if pipeline == "map" else 1

    class TotalPartition(StatelessSinkPartition):
        def __init__(self, out: list[int]) -> None:
            self.out = out
            self.total = 0

        def write_batch(self, items: list[Any]) -> None:
            total = self.total
            if index is None:
                for item in items:
                    total += item
            else:
                for item in items:  # (key, running count)
                    total += item[1]
            self.total = total

        def close(self) -> None:
            self.out.append(self.total)

    class Total(DynamicSink):
        def __init__(self, out: list[int]) -> None:
            self.out = out

        def build(self, step_id: str, worker_index: int, worker_count: int) -> TotalPartition:
            return TotalPartition(self.out)

    def count(state: int | None, _: Any) -> tuple[int, int]:
        state = (state or 0) + 1
        return state, state

    out: list[int] = []
    flow = Dataflow(f"peer_{pipeline}")
    stream = op.input("in", flow, TestingSource(data, batch_size=batch_size))
    if pipeline == "map":
        stream = op.map("map", stream, transform)
    else:
        if pipeline == "keyed":
            keyed = op.key_on("key_on", stream, record_key)
        else:
            keyed = op.key_on("key_on", op.flat_map("split", stream, split_line), word_key)
        stream = op.stateful_map("count", keyed, count)
    op.output("out", stream, Total(out))
    started = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - started
    _check("bytewax", pipeline, sum(out), data)
    return elapsed


# --------------------------------------------------------------------------- hand-written threads
def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_threads(pipeline: str, data: list[Any], batch: int) -> float:
    """Seconds for the hand-written thread pipeline: one record per put (`batch=1`) or lists of `batch`."""
    capacity = max(1, QUEUE_RECORDS // batch)  # the same records per queue in both forms
    result: list[int] = []
    threads: list[Callable[[], None]] = []
    sink_q: queue.Queue[Any] = queue.Queue(capacity)
    value_index = None if pipeline == "map" else 1
    ends_expected = 1 if pipeline == "map" else PARALLELISM

    def sink() -> None:
        get = sink_q.get
        total = 0
        ends = 0
        while ends < ends_expected:
            item = get()
            if item is _END:
                ends += 1
            elif batch == 1:
                total += item if value_index is None else item[1]
            elif value_index is None:
                for value in item:
                    total += value
            else:
                for _, count in item:
                    total += count
        result.append(total)

    if pipeline == "map":
        map_q: queue.Queue[Any] = queue.Queue(capacity)

        def source() -> None:
            put = map_q.put
            for item in (data if batch == 1 else _chunks(data, batch)):
                put(item)
            put(_END)

        def mapper() -> None:
            get, put = map_q.get, sink_q.put
            while (item := get()) is not _END:
                put(transform(item) if batch == 1 else [transform(r) for r in item])
            put(_END)

        threads = [source, mapper, sink]
    else:
        count_qs: list[queue.Queue[Any]] = [queue.Queue(capacity) for _ in range(PARALLELISM)]

        def route(keys: Any) -> None:
            """Send keys to their counter by hash, one per put or in lists of `batch` per counter."""
            puts = [q.put for q in count_qs]
            if batch == 1:
                for key in keys:
                    puts[hash(key) % PARALLELISM](key)
                return
            pending: list[list[str]] = [[] for _ in range(PARALLELISM)]
            for key in keys:
                part = hash(key) % PARALLELISM
                bucket = pending[part]
                bucket.append(key)
                if len(bucket) == batch:
                    puts[part](bucket)
                    pending[part] = []
            for part, bucket in enumerate(pending):
                if bucket:
                    puts[part](bucket)

        def counter(q: queue.Queue[Any]) -> Callable[[], None]:
            def run() -> None:
                get, put = q.get, sink_q.put
                counts: dict[str, int] = {}
                while (item := get()) is not _END:
                    if batch == 1:
                        count = counts.get(item, 0) + 1
                        counts[item] = count
                        put((item, count))
                    else:
                        out = []
                        for key in item:
                            count = counts.get(key, 0) + 1
                            counts[key] = count
                            out.append((key, count))
                        put(out)
                put(_END)
            return run

        if pipeline == "keyed":
            def source() -> None:
                route(r["key"] for r in data)
                for q in count_qs:
                    q.put(_END)

            threads = [source, *(counter(q) for q in count_qs), sink]
        else:
            line_q: queue.Queue[Any] = queue.Queue(max(1, capacity // WORDS_PER_LINE))

            def source() -> None:
                put = line_q.put
                for item in (data if batch == 1 else _chunks(data, batch)):
                    put(item)
                put(_END)

            def lines() -> Any:
                get = line_q.get
                while (item := get()) is not _END:
                    if batch == 1:
                        yield from item.split()
                    else:
                        for line in item:
                            yield from line.split()

            def splitter() -> None:
                route(lines())
                for q in count_qs:
                    q.put(_END)

            threads = [source, splitter, *(counter(q) for q in count_qs), sink]

    elapsed = time_threads(*threads)
    _check(f"threads batch {batch}", pipeline, sum(result), data)
    return elapsed


# --------------------------------------------------------------------------- fused
def run_fused(pipeline: str, data: list[Any]) -> float:
    """Seconds for the same work in one loop."""
    started = time.perf_counter()
    total = 0
    if pipeline == "map":
        for record in data:
            total += transform(record)
    else:
        counts: dict[str, int] = {}
        keys = (r["key"] for r in data) if pipeline == "keyed" else (w for line in data for w in line.split())
        for key in keys:
            count = counts.get(key, 0) + 1
            counts[key] = count
            total += count
    elapsed = time.perf_counter() - started
    _check("fused", pipeline, total, data)
    return elapsed


# --------------------------------------------------------------------------- registry
SYSTEMS: dict[str, Callable[[str, list[Any]], float]] = {
    "sage local": lambda p, d: run_sage(p, d, "local", "python"),
    "sage ray rpc": lambda p, d: run_sage(p, d, "ray", "rpc"),
    "bytewax": lambda p, d: run_bytewax(p, d, batch_size=1),
    "bytewax b100": lambda p, d: run_bytewax(p, d, batch_size=100),
    "threads 1": lambda p, d: run_threads(p, d, 1),
    "threads 100": lambda p, d: run_threads(p, d, 100),
    "fused": run_fused,
}
"""Every system compare_peers.py can run, by the name its table shows."""
