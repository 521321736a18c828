"""A checkpointed word count over files, written to files: the job the recovery tests break.

Run as a script (`python wordcount_job.py INPUT OUTPUT CHECKPOINTS [TRANSPORT]`)
it submits the job and exits 0 once the job finished: the SIGKILL tests start
it again and again until it does. `build()` makes the same job in-process.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections import Counter
from typing import Any

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import FileSink, FileSource, MapFunction
from sage.kernel.runtime.checkpoint import CheckpointStore
from sage.kernel.runtime.checkpoint.snapshot import decode

JOB = "recovery-wordcount"


class Count(MapFunction):
    """Keyed running count; raises once, at its `fail_at`-th record, if `marker` does not exist yet."""

    def __init__(self, fail_at: int = 0, marker: str = "") -> None:
        self.counts: dict[str, int] = {}
        self.seen = 0
        self.fail_at, self.marker = fail_at, marker

    def execute(self, word: str) -> list[Any]:
        self.seen += 1
        if self.seen == self.fail_at and self.marker and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            raise RuntimeError(f"{self.name} fails once, at its record {self.seen}")
        self.counts[word] = self.counts.get(word, 0) + 1
        return [word, self.counts[word]]

    def get_state(self) -> tuple[dict[str, int], int]:
        return self.counts, self.seen

    def restore_state(self, state: tuple[dict[str, int], int]) -> None:
        self.counts, self.seen = state


def write_input(directory: str, files: int, lines: int, words_per_line: int = 5, vocabulary: int = 97) -> Counter[str]:
    """Text files of words; returns how often each word occurs."""
    os.makedirs(directory, exist_ok=True)
    totals: Counter[str] = Counter()
    for f in range(files):
        with open(os.path.join(directory, f"part-{f:03d}.txt"), "w", encoding="utf-8") as out:
            for line in range(lines):
                words = [f"w{(f * 7919 + line * 31 + k * 17) % vocabulary}" for k in range(words_per_line)]
                totals.update(words)
                out.write(" ".join(words) + "\n")
    return totals


def build(input_dir: str, output_dir: str, checkpoint_dir: str, transport: str = "python", fail_at: int = 0,
          marker: str = "", interval: float = 0.05, restarts: int = 3) -> LocalEnvironment:
    env = LocalEnvironment(JOB, config={
        "checkpoint_interval": interval, "checkpoint_dir": checkpoint_dir, "restart_attempts": restarts,
        "restart_delay": 0.05, "transport": transport, "queue_maxsize": 512, "batch_size": 64})
    (env.from_batch(FileSource, input_dir, parallelism=2)
        .flatmap(lambda line: line.split())
        .keyby(lambda word: word)
        .map(Count, fail_at, marker, parallelism=2)
        .sink(FileSink, output_dir, parallelism=2))
    return env


def committed_output(output_dir: str) -> list[tuple[str, int]]:
    """Every (word, count) record in the committed files."""
    records = []
    for path in glob.glob(os.path.join(output_dir, "part-*.jsonl")):
        with open(path, encoding="utf-8") as lines:
            records += [tuple(json.loads(line)) for line in lines]
    return records


def final_counts(checkpoint_dir: str) -> dict[str, int]:
    """The Count instances' state in the job's last checkpoint, merged."""
    store = CheckpointStore(checkpoint_dir)
    run, _ = store.latest_run(JOB)
    last = store.last(JOB, run)
    parts = store.load(JOB, run, last.checkpoint_id)
    counts: dict[str, int] = {}
    for task, part in parts.items():
        if task.startswith("Count_"):
            counts.update(decode(part)["function"][0])
    return counts


def expected_output(totals: Counter[str]) -> Counter[tuple[str, int]]:
    return Counter((word, count) for word, total in totals.items() for count in range(1, total + 1))


if __name__ == "__main__":
    input_dir, output_dir, checkpoint_dir = sys.argv[1:4]
    env = build(input_dir, output_dir, checkpoint_dir, *(sys.argv[4:5] or ["python"]))
    env.submit(autostop=True)
    print("finished", flush=True)
