"""Pipeline-as-service: a whole pipeline answers service calls.

    python examples/pipeline_as_service.py [--backend local|ray]

`env.from_service("keywords", max_in_flight=4)` starts a service pipeline:
every `call_service("keywords", text)` becomes one record of that stream, the
operators clean the text, drop stop words and pick the longest words, and
`.reply()` answers the caller with the record that reaches it. At most four
requests are inside the service pipeline at once, however many callers there
are. A request the `filter` drops is never answered: its caller times out.

The main pipeline (three parallel `Ask` instances) calls the service once per
document. When it has finished, the service pipeline is stopped and the job
finishes on its own. The answers come back with `collect()`, on local threads
or on Ray actors (`--backend`, or SAGE_KERNEL_BACKEND; local by default).
"""

import argparse
import os

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import MapFunction

STOP_WORDS = {"a", "an", "and", "the", "of", "to", "in", "on", "is", "it"}

DOCUMENTS = [
    "The river carried the stone to the mill",
    "A miller counted the stones and the river ran on",
    "   ",
    "Stones in the river are kept by the river",
]


def words(text: str) -> list[str]:
    return [w for w in text.lower().split() if w not in STOP_WORDS]


def top_words(tokens: list[str]) -> list[str]:
    return sorted(set(tokens), key=lambda w: (-len(w), w))[:3]


class Ask(MapFunction):
    def execute(self, document: str) -> tuple[str, object]:
        try:
            return document, self.call_service("keywords", document, timeout=2.0)
        except TimeoutError:
            return document, "no answer (the service pipeline dropped it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("pipeline-as-service")
    (env.from_service("keywords", max_in_flight=4)
        .map(words)
        .filter(lambda tokens: len(tokens) > 0)   # an empty document gets no answer
        .map(top_words, parallelism=2)
        .reply())
    answers = env.from_batch(DOCUMENTS).map(Ask, parallelism=3).collect()
    env.submit(autostop=True)

    for document, keywords in sorted(answers):
        print(f"{document.strip()!r:52} -> {keywords}")


if __name__ == "__main__":
    main()
