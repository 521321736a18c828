"""Services: a lexicon that pipeline functions call by name.

    python examples/service_lookup.py [--backend local|ray]

A `Lexicon` service holds a small word list (a stand-in for a model, an index
or a cache). The `Annotate` map calls it three ways for every word: a
synchronous call of its default method `process`, a call of another method
(`lookup`, with a keyword argument and its own timeout) and an asynchronous
call that returns a `concurrent.futures.Future`. A word the lexicon refuses
raises `UnknownWord` in the caller, the same type the service raised. The
time a call spends inside the service goes to stderr (it varies from run to run).
On Ray (`--backend ray`, or SAGE_KERNEL_BACKEND=ray) the service and the
callers are actors; the rows come back with `collect()` and read the same.
"""

import argparse
import os
import sys
from concurrent.futures import Future
from typing import Any

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.api.service import BaseService

ENTRIES = {"river": "a stream of water", "mill": "a building that grinds grain", "stone": "a piece of rock"}


class UnknownWord(KeyError):
    """Raised by the lexicon for a word it does not hold."""


class Lexicon(BaseService):
    """Word lengths and definitions. Built once per job; `setup()` runs before the first request."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries
        self.definitions: dict[str, str] = {}

    def setup(self) -> None:
        self.definitions = {word.lower(): text for word, text in self.entries.items()}
        self.logger.info("lexicon ready with %d entries", len(self.definitions))

    def process(self, word: str) -> int:
        return len(word)

    def lookup(self, word: str, default: Any = None) -> Any:
        return self.definitions.get(word, default)

    def define(self, word: str) -> str:
        if word not in self.definitions:
            raise UnknownWord(word)
        return self.definitions[word]


class Annotate(MapFunction):
    def execute(self, word: str) -> tuple[str, int, Any, int, str]:
        length = self.call_service("lexicon", word)                                      # method "process"
        meaning = self.call_service("lexicon", word, method="lookup", default="?", timeout=2.0)
        pending: Future = self.call_service_async("lexicon", word)                      # does not wait
        try:
            checked = self.call_service("lexicon", word, method="define")
        except UnknownWord:
            checked = "not in the lexicon"
        return word, length, meaning, pending.result(timeout=2.0), checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("service-lookup")
    env.register_service("lexicon", Lexicon, ENTRIES, max_concurrency=1)
    rows = env.from_batch(["river", "stone", "moon", "mill"]).map(Annotate, parallelism=2).collect()
    job = env.submit(autostop=True)

    for word, length, meaning, again, checked in sorted(rows):
        print(f"{word:6} {length} {again}  {meaning:30}  {checked}")
    service = job.metrics()["service:lexicon"]
    print(f"lexicon: {service['calls']} calls, {service['errors']} errors")
    print(f"measured: p50 {service['latency_p50'] * 1e6:.0f} us inside the service", file=sys.stderr)


if __name__ == "__main__":
    main()
