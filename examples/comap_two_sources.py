"""CoMap: two sources with different record shapes become one stream of the same shape.

    python examples/comap_two_sources.py [--backend local|ray]   # or: sage-kernel run examples/comap_two_sources.py

Station "north" reports `(minute, celsius)` tuples (a list); station "south"
reports `{"t": minute, "f": fahrenheit}` dicts from a source function that
ends its stream by returning a `StopSignal`. `map0` handles input 0 (north),
`map1` input 1 (south); the job finishes when both sources have ended.
`collect()` brings the readings back to this process on either backend
(`--backend`, or SAGE_KERNEL_BACKEND; local threads by default).
"""

import argparse
import os

from sage.kernel import LocalEnvironment, RayEnvironment, StopSignal
from sage.kernel.api.function import CoMapFunction, SourceFunction


class SouthStation(SourceFunction):
    """Ten readings, one per call, then the end of the stream."""

    def __init__(self) -> None:
        self.minute = 0

    def execute(self):
        if self.minute == 10:
            return StopSignal("south station done")
        self.minute += 1
        return {"t": self.minute, "f": 50.0 + self.minute}


class ToCelsius(CoMapFunction):
    def map0(self, reading):
        minute, celsius = reading
        return {"station": "north", "minute": minute, "celsius": celsius}

    def map1(self, reading):
        return {"station": "south", "minute": reading["t"], "celsius": round((reading["f"] - 32) * 5 / 9, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("two-stations")
    north = env.from_batch([(minute, 20.0 - minute / 10) for minute in range(1, 101)])
    south = env.from_source(SouthStation)
    results = north.connect(south).comap(ToCelsius).collect()
    env.submit(autostop=True)

    readings = list(results)
    for station in ("north", "south"):
        values = [r["celsius"] for r in readings if r["station"] == station]
        print(f"{station}: {len(values)} readings, mean {sum(values) / len(values):.2f} C")


if __name__ == "__main__":
    main()
