"""No record lost or duplicated: source -> map -> keyby -> map -> sink at every parallelism."""

from __future__ import annotations

from collections import Counter

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import MapFunction
from sage.kernel.testing import TestingSink

from .support import JOB_TIMEOUT

N = 3000


class Tag(MapFunction):
    """Pairs each record with the name of the instance that handled it."""

    def execute(self, data: int) -> tuple[int, str]:
        return data, self.name


@pytest.mark.parametrize("downstream", [1, 2, 3])
@pytest.mark.parametrize("upstream", [1, 2, 3])
def test_every_record_arrives_once(upstream: int, downstream: int) -> None:
    out: list[tuple[int, str]] = []
    env = LocalEnvironment(f"exact-{upstream}x{downstream}")
    (env.from_batch(list(range(N)), parallelism=upstream)
        .map(lambda x: x * 2, parallelism=upstream)
        .keyby(lambda x: x % 17)
        .map(Tag, parallelism=downstream)
        .sink(TestingSink, out))
    job = env.submit()
    assert job.wait(JOB_TIMEOUT) == "finished"

    assert Counter(value for value, _ in out) == Counter(x * 2 for x in range(N))
    # Every key went to exactly one downstream instance.
    owners: dict[int, set[str]] = {}
    for value, name in out:
        owners.setdefault(value % 17, set()).add(name)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert set().union(*owners.values()) <= {f"Tag_{i}" for i in range(downstream)}

    metrics = job.metrics()
    assert sum(m["records_out"] for m in metrics.values() if m["kind"] == "batch") == N
    assert sum(m["records_in"] for m in metrics.values() if m["kind"] == "sink") == N
    assert {m["status"] for m in metrics.values()} == {"finished"}


def test_records_keep_their_order_per_channel() -> None:
    """One source instance, one map instance, one sink: the channel delivers in order."""
    out: list[int] = []
    env = LocalEnvironment("ordered", config={"queue_maxsize": 7, "batch_size": 3})
    env.from_batch(range(N)).map(lambda x: x + 1).sink(TestingSink, out)
    env.submit(autostop=True)
    assert out == [x + 1 for x in range(N)]
