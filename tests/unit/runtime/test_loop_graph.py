"""Compiling feedback loops: futures read through as feedback edges, loops found, roles, keyed routing, errors."""

from __future__ import annotations

import random

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import JoinFunction
from sage.kernel.runtime.backend.local_backend import LocalBackend
from sage.kernel.runtime.compile import compile_graph
from sage.kernel.runtime.graph import ExecutionGraph
from sage.kernel.runtime.graph.execution_graph import routing_strategies
from sage.kernel.runtime.graph.loops import check_futures


def compile_env(env: LocalEnvironment) -> ExecutionGraph:
    return compile_graph(env.job_spec(), "loop-job", LocalBackend())


def collatz_env(parallelism: int = 2) -> LocalEnvironment:
    env = LocalEnvironment("collatz")
    loop = env.from_future("again")
    step = env.from_batch(range(1, 10)).connect(loop).map(lambda n: n // 2, parallelism=parallelism)
    step.filter(lambda n: n > 1).fill_future(loop)
    step.filter(lambda n: n <= 1).sink(print)
    return env


def test_operators_reading_a_future_read_its_filler_over_feedback_edges() -> None:
    graph = compile_env(collatz_env())
    assert "again_0" not in graph.nodes  # a future runs no task
    feedback = graph.nodes["filter_0"].downstream_groups[0]
    assert {c.target_name: (c.edge, c.target_input_index) for c in feedback.values()} == {
        "map_0": ("feedback", 1), "map_1": ("feedback", 1)}
    loop_edges = {c.target_name: c.edge for c in graph.nodes["map_0"].downstream_groups[0].values()}
    out_edges = {c.target_name: c.edge for c in graph.nodes["map_0"].downstream_groups[1].values()}
    assert loop_edges == {"filter_0": "loop"} and out_edges == {"filter2_0": "data"}
    assert [c.edge for c in graph.nodes["from_batch_0"].downstream_groups[0].values()] == ["data", "data"]


def test_every_instance_of_a_loop_gets_its_place_in_one_ring() -> None:
    graph = compile_env(collatz_env())
    assert [[t.basename for t in loop] for loop in graph.loops] == [["map", "filter"]]
    roles = {name: graph.nodes[name].loop for name in ("map_0", "map_1", "filter_0")}
    assert [roles[n].position for n in ("map_0", "map_1", "filter_0")] == [0, 1, 2]
    assert [name for name, _ in roles["map_1"].ring] == ["map_0", "map_1", "filter_0"]
    assert roles["map_0"].inner_upstreams == roles["map_0"].feedback_upstreams == frozenset({"filter_0"})
    assert roles["filter_0"].inner_upstreams == frozenset({"map_0", "map_1"})
    assert roles["filter_0"].feedback_upstreams == frozenset()
    assert graph.nodes["from_batch_0"].loop is None and graph.nodes["filter2_0"].loop is None
    assert roles["filter_0"].next_member[0] == "map_0"


def test_a_keyed_loop_stays_hash_routed_all_the_way_round() -> None:
    env = LocalEnvironment("keyed")
    loop = env.from_future("labels")
    seeds = env.from_batch([(1, 1)]).keyby(lambda m: m[0])
    updates = seeds.connect(loop).flatmap(lambda m: [m], parallelism=3)
    updates.filter(lambda m: False).keyby(lambda m: m[0]).fill_future(loop)
    updates.sink(print)
    graph = compile_env(env)
    assert graph.nodes["keyby_0"].group_strategies == {0: "hash"}
    assert graph.nodes["keyby2_0"].group_strategies == {0: "hash"}  # the feedback edge
    assert graph.nodes["flatmap_0"].group_strategies == {0: "hash", 1: "hash"}


def test_a_future_read_outside_its_loop_is_an_ordinary_edge_out_of_it() -> None:
    env = LocalEnvironment("monitor")
    loop = env.from_future("again")
    step = env.from_batch(range(1, 10)).connect(loop).map(lambda n: n // 2)
    step.filter(lambda n: n > 1).fill_future(loop)
    loop.map(lambda n: n).sink(print)  # watches what goes round, from outside the loop
    graph = compile_env(env)
    edges = {c.target_name: c.edge for group in graph.nodes["filter_0"].downstream_groups.values()
             for c in group.values()}
    assert edges == {"map_0": "feedback", "map2_0": "data"}
    assert graph.nodes["map2_0"].loop is None and graph.nodes["map2_0"].upstream_names == ["filter_0"]


def test_two_loops_are_found_apart() -> None:
    env = LocalEnvironment("two")
    first, second = env.from_future("first"), env.from_future("second")
    a = env.from_batch([1]).connect(first).map(lambda x: x)
    a.filter(lambda x: False).fill_future(first)
    b = a.connect(second).map(lambda x: x)
    b.filter(lambda x: False).fill_future(second)
    b.sink(print)
    graph = compile_env(env)
    assert [[t.basename for t in loop] for loop in graph.loops] == [["map", "filter"], ["map2", "filter2"]]
    assert graph.nodes["map2_0"].loop.loop == 1
    assert {c.edge for c in graph.nodes["map_0"].downstream_groups[1].values()} == {"data"}  # loop 1 -> loop 2


def build_error(build) -> str:
    env = LocalEnvironment("errors")
    build(env)
    with pytest.raises(PipelineError) as raised:
        env.submit(autostop=True)
    return str(raised.value)


def test_a_future_never_filled_is_refused_at_submit() -> None:
    def build(env):
        loop = env.from_future("again")
        env.from_batch([1]).connect(loop).map(lambda x: x).sink(print)
    assert "future 'again' is never filled" in build_error(build)


def test_a_future_filled_twice_is_refused_at_submit() -> None:
    def build(env):
        loop = env.from_future("again")
        step = env.from_batch([1]).connect(loop).map(lambda x: x)
        step.filter(lambda x: False).fill_future(loop)
        step.map(lambda x: x).fill_future(loop)
        step.sink(print)
    assert "future 'again' is filled twice (by 'filter' and 'map2')" in build_error(build)


def test_a_future_filled_by_a_stream_that_does_not_depend_on_it_is_refused_at_submit() -> None:
    def build(env):
        loop = env.from_future("again")
        env.from_batch([1]).connect(loop).map(lambda x: x).sink(print)
        env.from_batch([2]).map(lambda x: x).fill_future(loop)
    message = build_error(build)
    assert "future 'again' is filled by operator 'map2', which does not depend on it: no loop is closed" in message


def test_two_futures_with_one_name_are_refused_at_submit() -> None:
    def build(env):
        first, second = env.from_future("again"), env.from_future("again")
        step = env.from_batch([1]).connect(first).connect(second).map(lambda x: x)
        step.filter(lambda x: False).fill_future(first)
        step.filter(lambda x: False).fill_future(second)
        step.sink(print)
    assert "two futures are named 'again'" in build_error(build)


def test_fill_future_takes_only_a_future_of_the_same_environment() -> None:
    env, other = LocalEnvironment("one"), LocalEnvironment("other")
    stream = env.from_batch([1]).map(lambda x: x)
    with pytest.raises(PipelineError, match=r"expected a stream made by env\.from_future"):
        stream.fill_future(stream)
    with pytest.raises(PipelineError, match="future 'x' belongs to another environment"):
        stream.fill_future(other.from_future("x"))
    with pytest.raises(PipelineError, match="name must be a non-empty string"):
        env.from_future("")


def test_a_loop_may_close_through_two_futures() -> None:
    env = LocalEnvironment("mutual")
    first, second = env.from_future("first"), env.from_future("second")
    down = env.from_batch([5, 6]).connect(first).map(lambda x: x - 1)
    down.filter(lambda x: x > 0).fill_future(second)
    second.map(lambda x: x).fill_future(first)
    zeros = down.filter(lambda x: x == 0).collect()
    graph = compile_env(env)
    assert [[t.basename for t in loop] for loop in graph.loops] == [["map", "filter", "map2"]]
    env.submit(autostop=True)
    assert list(zeros) == [0, 0]


def test_a_future_filled_with_a_future_is_refused() -> None:
    def build(env):
        loop = env.from_future("again")
        loop.fill_future(loop)
        env.from_batch([1]).connect(loop).map(lambda x: x).sink(print)
    assert "future 'again' is filled with a future ('again') directly" in build_error(build)


def test_a_join_may_read_a_future_that_a_keyby_fills() -> None:
    env = LocalEnvironment("join-loop")
    loop = env.from_future("again")
    left = env.from_batch([(k, 0) for k in range(5)]).keyby(lambda r: r[0])
    joined = left.connect(loop).join(Pairs, parallelism=2)
    joined.filter(lambda r: r[1] < 3).keyby(lambda r: r[0]).fill_future(loop)
    done = joined.filter(lambda r: r[1] >= 3).collect()
    env.submit(autostop=True)
    assert sorted(done) == [(k, 3) for k in range(5)]


def test_a_join_reading_a_future_filled_without_keys_is_refused_at_submit() -> None:
    def build(env):
        loop = env.from_future("again")
        left = env.from_batch([(1, 0)]).keyby(lambda r: r[0])
        joined = left.connect(loop).join(Pairs)
        joined.filter(lambda r: False).keyby(lambda r: r[0], strategy="round_robin").fill_future(loop)
        joined.sink(print)
    assert "join operator Pairs: input(s) [1] are not keyed" in build_error(build)


class Pairs(JoinFunction):
    """Every record goes on one step: (key, step) -> (key, step + 1)."""

    def execute(self, payload, key, tag):
        return [(payload[0], payload[1] + 1)]


def test_routing_strategies_settle_on_random_loops_and_never_drop_keys() -> None:
    checked = 0
    for seed in range(400):
        rng = random.Random(seed)
        env = LocalEnvironment("random")
        streams = [env.from_batch([1])]
        futures = [env.from_future(f"f{i}") for i in range(rng.randint(1, 3))]
        streams += futures
        for _ in range(rng.randint(2, 8)):
            a, b, pick = rng.choice(streams), rng.choice(streams), rng.random()
            streams.append(a.keyby(lambda x: x) if pick < 0.3 else
                           a.connect(b).map(lambda x: x) if pick < 0.6 else a.map(lambda x: x))
        for future in futures:
            rng.choice([s for s in streams if s not in futures]).fill_future(future)
        try:
            check_futures(env.transformations)
        except PipelineError:
            continue
        strategies = routing_strategies(env.transformations)  # returns: the rounds end
        for t in env.transformations:
            if t.kind in ("keyby", "future"):
                continue
            inputs = [strategies[id(i)] for i in t.inputs]
            if any(s in ("hash", "mixed") for s in inputs):
                assert strategies[id(t)] in ("hash", "mixed"), (seed, t)  # a key that came in goes out
            if strategies[id(t)] == "hash":
                assert all(s == "hash" for s in inputs), (seed, t)  # "hash" only when every record is keyed
        checked += 1
    assert checked > 50
