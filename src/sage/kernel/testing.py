"""Sources, sinks and a waiting helper for testing pipelines (as Bytewax ships `bytewax.testing`).

```python
from sage.kernel import LocalEnvironment
from sage.kernel.testing import TestingSink, TestingSource

out = []
env = LocalEnvironment("test")
env.from_source(TestingSource, [1, 2, 3]).map(lambda x: x * 10).sink(TestingSink, out)
env.submit(autostop=True)
assert out == [10, 20, 30]
```

`TestingSink` appends to a list of the submitting process, so it works where
operators run in that process (`LocalEnvironment`); a Ray job that uses it is
refused at submit. `stream.collect()` gets records back on every backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .api.function import SinkFunction, SourceFunction
from .runtime.communication.router.packet import StopSignal

__all__ = ["TestingSink", "TestingSource", "wait_until"]

WAIT_STEP = 0.002
"""Seconds between two checks of `wait_until` (it polls: use it only where no event can be awaited)."""


class TestingSource(SourceFunction):
    """Emits the items of a list in order, then ends its stream.

    Use with `env.from_source(TestingSource, items)`. With `parallelism=n`,
    instance i emits items i, i+n, i+2n, ... so every item is emitted once. It
    runs on the polled source path (`SourceFunction`), so `job.stop()` ends it
    early like a real source. Its position is its state (`get_state` /
    `restore_state`), so a checkpointed job resumes where it was.
    """

    __test__ = False  # a class named Test* that pytest must not collect

    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)
        self.position = 0

    def _share(self) -> list[Any]:
        parallelism = self.ctx.parallelism if self.ctx is not None else 1
        index = self.ctx.parallel_index if self.ctx is not None else 0
        return self.items[index::parallelism]

    def open(self) -> None:
        self._mine = self._share()

    def execute(self) -> Any:
        if self.position >= len(self._mine):
            return StopSignal("end of TestingSource")
        item = self._mine[self.position]
        self.position += 1
        return item

    def get_state(self) -> int:
        """How many of this instance's items were emitted."""
        return self.position

    def restore_state(self, state: int) -> None:
        self.position = state


class TestingSink(SinkFunction):
    """Appends every record to `out`, a list of the submitting process.

    Use with `stream.sink(TestingSink, out)` on `LocalEnvironment`. Several
    instances (`parallelism > 1`) append to the same list (append is atomic).
    """

    __test__ = False
    local_only_reason = ("TestingSink appends to a list of the submitting process, which operators on other "
                         "processes cannot reach; use results = stream.collect() instead")

    def __init__(self, out: list[Any]) -> None:
        self.out = out

    def execute(self, data: Any) -> None:
        self.out.append(data)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, message: str = "") -> None:
    """Return once `predicate()` is true; raise `AssertionError` (with `message`) after `timeout` seconds.

    It polls every `WAIT_STEP` seconds. Await an event instead wherever the
    code under test offers one (`job.wait()`, a `threading.Event`).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not reached within {timeout} s")
        time.sleep(WAIT_STEP)
