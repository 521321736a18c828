"""flatmap_async: records streamed from a server one by one, emitted as they come, in order per input."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import AsyncFlatMapFunction

from .support import ModelServer, http_lines

TOKENS = 5


def tokens_from(port: int) -> Any:
    async def tokens(x: int) -> AsyncIterator[str]:
        async for line in http_lines(port, f"/tokens?x={x}&n={TOKENS}"):
            yield line
    return tokens


def test_ordered_streams_each_inputs_tokens_before_the_next_inputs() -> None:
    with ModelServer(token_delay=0.005) as server:
        env = LocalEnvironment("tokens-ordered")
        results = env.from_batch(range(40)).flatmap_async(tokens_from(server.port), capacity=16).collect()
        env.submit(autostop=True)
    assert list(results) == [f"{x}:{i}" for x in range(40) for i in range(TOKENS)]


def test_unordered_interleaves_inputs_but_keeps_each_ones_order() -> None:
    with ModelServer(token_delay=0.005) as server:
        env = LocalEnvironment("tokens-unordered")
        results = (env.from_batch(range(40))
                   .flatmap_async(tokens_from(server.port), capacity=16, ordered=False).collect())
        env.submit(autostop=True)
    out = list(results)
    per_input: dict[str, list[str]] = {}
    for token in out:
        per_input.setdefault(token.split(":")[0], []).append(token)
    assert per_input == {str(x): [f"{x}:{i}" for i in range(TOKENS)] for x in range(40)}


@pytest.mark.parametrize("ordered", [True, False])
def test_a_token_reaches_downstream_while_its_stream_is_still_running(ordered: bool) -> None:
    with ModelServer() as server:
        server.stall_tokens_after = {"0": 1}  # the first stream pauses after its first token until released
        env = LocalEnvironment("tokens-streaming")
        results = env.from_batch(range(3)).flatmap_async(tokens_from(server.port), ordered=ordered).collect()
        job = env.submit()
        seen = []
        for token in results:
            seen.append(token)
            if token == "0:0":
                server.release()  # "0:0" arrived before "0:1" was even sent
        assert job.wait(60) == "finished"
    assert sorted(seen) == sorted(f"{x}:{i}" for x in range(3) for i in range(TOKENS))
    if ordered:
        assert seen == [f"{x}:{i}" for x in range(3) for i in range(TOKENS)]


class Generate(AsyncFlatMapFunction):
    """The class form: an async generator method; a stream that breaks after its first token."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def execute(self, x: int) -> AsyncIterator[str]:
        async for line in http_lines(self.port, f"/tokens?x={x}&n={TOKENS}"):
            if x == 2 and line.endswith(":1"):
                raise ConnectionResetError("the stream broke")
            yield line


def test_a_stream_that_breaks_after_yielding_is_not_retried_and_keeps_what_it_yielded() -> None:
    with ModelServer() as server:
        env = LocalEnvironment("tokens-broken")
        results = env.from_batch(range(4)).flatmap_async(Generate, server.port, retries=3, on_error="skip").collect()
        job = env.submit(autostop=True)
        hits = server.hits["2"]
    assert list(results) == [f"{x}:{i}" for x in range(4) for i in (range(TOKENS) if x != 2 else [0])]
    assert hits == 1  # a retry would repeat "2:0"
    assert job.metrics()["Generate_0"]["errors"] == 1


RECORDS_PER_INPUT = 1500
CAPACITY, BATCH, QUEUE = 2, 16, 8
HELD_AT_MOST = 4 * CAPACITY * BATCH + 2 * QUEUE + 2 * BATCH
"""Records yielded and not yet consumed, at most: `capacity * batch_size` waiting in the slots, as many again in
the run the task thread is sending, a router batch, the sink's queue and what the sink took from it (with room
to spare). Without backpressure on outputs the generators run ahead by thousands."""


@pytest.mark.parametrize("ordered", [True, False])
def test_generators_wait_for_a_slow_downstream_so_memory_stays_bounded(ordered: bool) -> None:
    counts = {"yielded": 0, "consumed": 0, "most_held": 0}

    async def rows(page: int) -> AsyncIterator[tuple[int, int]]:
        for i in range(RECORDS_PER_INPUT):
            counts["yielded"] += 1
            counts["most_held"] = max(counts["most_held"], counts["yielded"] - counts["consumed"])
            yield page, i

    def slow_sink(row: tuple[int, int]) -> None:
        counts["consumed"] += 1
        time.sleep(0.0001)  # a slow consumer (a database insert): the generators are far faster

    env = LocalEnvironment("tokens-backpressure", config={"queue_maxsize": QUEUE, "batch_size": BATCH})
    env.from_batch(range(4)).flatmap_async(rows, capacity=CAPACITY, ordered=ordered).sink(slow_sink)
    env.submit(autostop=True)
    assert counts["yielded"] == counts["consumed"] == 4 * RECORDS_PER_INPUT
    assert counts["most_held"] <= HELD_AT_MOST, counts
