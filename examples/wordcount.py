"""Word count: split lines into words, route each word to one counter, print the top words.

    python examples/wordcount.py [FILE]          # or: sage-kernel run examples/wordcount.py [FILE]

Counts the words of FILE (UTF-8), or of a few lines written below. The
counter keeps per-word state safely because `keyby` sends every occurrence
of a word to the same one of its parallel instances.
"""

import sys

from sage.kernel import LocalEnvironment
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
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as text:
            lines = text.read().splitlines()
    else:
        lines = TEXT.splitlines()
    counts: dict[str, int] = {}

    env = LocalEnvironment("wordcount")
    (env.from_batch(lines)
        .flatmap(lambda line: line.lower().split())
        .keyby(lambda word: word)
        .map(RunningCount, parallelism=2)
        .sink(lambda pair: counts.__setitem__(*pair)))  # the last running count per word is its total
    job = env.submit(autostop=True)

    for word, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:5]:
        print(f"{word}\t{count}")
    words_in = sum(m["records_in"] for name, m in job.metrics().items() if name.startswith("RunningCount"))
    print(f"{words_in} words, {len(counts)} distinct")


if __name__ == "__main__":
    main()
