"""Collatz through a feedback loop: numbers go round a step operator until they reach 1.

    python examples/feedback_loop.py [COUNT] [--backend local|ray]    # or: sage-kernel run examples/feedback_loop.py

`env.from_future("again")` is a stream filled later: the numbers not at 1 yet
are sent back to it with `fill_future`, the others leave the loop. The job
ends by itself once no number is left anywhere in the loop. Prints the
numbers up to COUNT (default 10,000) with the longest paths to 1, and how many
records went round again; the same on threads (`--backend local`, the
default) as on Ray actors (`--backend ray`, or SAGE_KERNEL_BACKEND=ray).
"""

import argparse
import os

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import MapFunction


class CollatzStep(MapFunction):
    """(n, steps, start) -> (next n, steps + 1, start); a number at 1 passes unchanged."""

    def execute(self, record: tuple[int, int, int]) -> tuple[int, int, int]:
        n, steps, start = record
        if n == 1:
            return record
        return (n // 2 if n % 2 == 0 else 3 * n + 1), steps + 1, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000, help="run the numbers 1..COUNT")
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("collatz")
    loop = env.from_future("again")
    step = (env.from_batch([(n, 0, n) for n in range(1, args.count + 1)])
               .connect(loop)
               .map(CollatzStep, parallelism=2))
    step.filter(lambda record: record[0] != 1).fill_future(loop)    # not at 1: round again
    done = step.filter(lambda record: record[0] == 1).collect()      # at 1: out of the loop
    job = env.submit(autostop=True)

    steps = {start: count for _, count, start in done}
    print(f"{len(steps):,} numbers reached 1")
    for start, count in sorted(steps.items(), key=lambda pair: (-pair[1], pair[0]))[:5]:
        print(f"{start}\t{count} steps")
    print(f"{job.metrics()['filter_0']['fed_back']:,} records went round again")


if __name__ == "__main__":
    main()
