"""Word count: split lines into words, route each word to one counter, print the top words.

    python examples/wordcount.py [FILE] [--backend local|ray]    # or: sage-kernel run examples/wordcount.py

Counts the words of FILE (UTF-8), or of a few lines written below. The
counter keeps per-word state safely because `keyby` sends every occurrence
of a word to the same one of its parallel instances. `collect()` brings the
running counts back to this process, on threads (`--backend local`, the
default) as on Ray actors (`--backend ray`, or SAGE_KERNEL_BACKEND=ray); the
output is the same.
"""

import argparse
import os

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import MapFunction

TEXT = """\
the river carried the stone to the mill
the miller counted the stones and the river ran on
a stone in the river is a stone the river keeps
"""


class RunningCount(MapFunction):
    """Emits `(word, occurrences so far)` for every word it sees."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def execute(self, word: str) -> tuple[str, int]:
        self.seen[word] = self.seen.get(word, 0) + 1
        return word, self.seen[word]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="a UTF-8 text file (default: a few lines of the script)")
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()
    if args.file:
        with open(args.file, encoding="utf-8") as text:
            lines = text.read().splitlines()
    else:
        lines = TEXT.splitlines()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("wordcount")
    running_counts = (env.from_batch(lines)
        .flatmap(lambda line: line.lower().split())
        .keyby(lambda word: word)
        .map(RunningCount, parallelism=2)
        .collect())
    job = env.submit(autostop=True)

    # A word's counts come from one instance, in order: its last running count is its total.
    counts = dict(running_counts)
    for word, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:5]:
        print(f"{word}\t{count}")
    words_in = sum(m["records_in"] for name, m in job.metrics().items() if name.startswith("RunningCount"))
    print(f"{words_in} words, {len(counts)} distinct")


if __name__ == "__main__":
    main()
