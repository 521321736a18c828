"""CoMap: two sources with different record shapes become one stream of the same shape.

    python examples/comap_two_sources.py         # or: sage-kernel run examples/comap_two_sources.py

Station "north" reports `(minute, celsius)` tuples (a list); station "south"
reports `{"t": minute, "f": fahrenheit}` dicts from a source function that
ends its stream by returning a `StopSignal`. `map0` handles input 0 (north),
`map1` input 1 (south); the job finishes when both sources have ended.
"""

from sage.kernel import LocalEnvironment, StopSignal
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
    readings = []
    env = LocalEnvironment("two-stations")
    north = env.from_batch([(minute, 20.0 - minute / 10) for minute in range(1, 101)])
    south = env.from_source(SouthStation)
    north.connect(south).comap(ToCelsius).sink(readings.append)
    env.submit(autostop=True)

    for station in ("north", "south"):
        values = [r["celsius"] for r in readings if r["station"] == station]
        print(f"{station}: {len(values)} readings, mean {sum(values) / len(values):.2f} C")


if __name__ == "__main__":
    main()
