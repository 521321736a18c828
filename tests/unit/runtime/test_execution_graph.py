"""Compiling a pipeline: task nodes, input queues, downstream groups and expected stop signals."""

from __future__ import annotations

from sage.kernel import LocalEnvironment
from sage.kernel.api.function import CoMapFunction
from sage.kernel.runtime.backend.local_backend import LocalBackend
from sage.kernel.runtime.compile import compile_graph
from sage.kernel.runtime.graph import ExecutionGraph


class Both(CoMapFunction):
    def map0(self, data):
        return data

    def map1(self, data):
        return data


def compile_env(env: LocalEnvironment) -> ExecutionGraph:
    return compile_graph(env.job_spec(), "job-under-test", LocalBackend())


def test_one_node_per_transformation_and_parallel_index() -> None:
    env = LocalEnvironment("graph", config={"queue_maxsize": 5})
    env.from_batch(range(10), parallelism=2).map(lambda x: x, parallelism=3).sink(print)
    graph = compile_env(env)
    assert list(graph.nodes) == ["from_batch_0", "from_batch_1", "map_0", "map_1", "map_2", "print_0"]
    sources = [n for n in graph.nodes.values() if n.is_source]
    assert [n.name for n in sources] == ["from_batch_0", "from_batch_1"]
    assert all(n.input_qd is None for n in sources)
    queue_ids = {n.input_qd.queue_id for n in graph.nodes.values() if not n.is_source}
    assert queue_ids == {f"job-under-test.{name}.in" for name in ("map_0", "map_1", "map_2", "print_0")}
    assert {n.input_qd.maxsize for n in graph.nodes.values() if not n.is_source} == {5}


def test_every_upstream_instance_connects_to_every_downstream_instance() -> None:
    env = LocalEnvironment("graph")
    env.from_batch(range(10), parallelism=2).map(lambda x: x, parallelism=3).sink(print)
    graph = compile_env(env)
    for source in ("from_batch_0", "from_batch_1"):
        groups = graph.nodes[source].downstream_groups
        assert list(groups) == [0]
        assert {p: c.target_name for p, c in groups[0].items()} == {0: "map_0", 1: "map_1", 2: "map_2"}
    for name in ("map_0", "map_1", "map_2"):
        assert graph.nodes[name].upstream_names == ["from_batch_0", "from_batch_1"]
    assert graph.nodes["print_0"].upstream_names == ["map_0", "map_1", "map_2"]


def test_connected_inputs_carry_their_input_index_and_share_one_queue() -> None:
    env = LocalEnvironment("graph")
    left, right = env.from_batch([1]), env.from_batch([2], parallelism=2)
    left.connect(right).comap(Both, parallelism=2).sink(print)
    graph = compile_env(env)
    left_group = graph.nodes["from_batch_0"].downstream_groups[0]
    right_group = graph.nodes["from_batch2_1"].downstream_groups[0]
    assert {c.target_input_index for c in left_group.values()} == {0}
    assert {c.target_input_index for c in right_group.values()} == {1}
    assert left_group[1].queue_descriptor.queue_id == right_group[1].queue_descriptor.queue_id
    assert graph.nodes["Both_1"].upstream_names == ["from_batch_0", "from_batch2_0", "from_batch2_1"]


def test_a_stream_feeding_two_operators_has_one_group_per_edge() -> None:
    env = LocalEnvironment("graph")
    source = env.from_batch([1])
    source.map(lambda x: x, parallelism=2).sink(print)
    source.sink(print)
    graph = compile_env(env)
    groups = graph.nodes["from_batch_0"].downstream_groups
    assert {b: sorted(c.target_name for c in g.values()) for b, g in groups.items()} == {
        0: ["map_0", "map_1"],
        1: ["print2_0"],
    }
