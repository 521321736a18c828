"""Bad pipelines fail when built or submitted, with a message naming the operator."""

from __future__ import annotations

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import CoMapFunction, JoinFunction, MapFunction, SinkFunction


class OnlyMap0(CoMapFunction):
    def map0(self, data: int) -> int:
        return data


class Pair(JoinFunction):
    def execute(self, payload, key, tag):
        return [payload]


class Noop(SinkFunction):
    def execute(self, data) -> None:
        pass


def env() -> LocalEnvironment:
    return LocalEnvironment("errors")


@pytest.mark.parametrize("parallelism", [0, -1, 1.5, True, "2"])
def test_parallelism_must_be_a_positive_int(parallelism) -> None:
    def double(x):
        return 2 * x

    stream = env().from_batch([1])
    with pytest.raises(PipelineError, match=r"operator 'double'.*parallelism"):
        stream.map(double, parallelism=parallelism)


def test_source_parallelism_is_checked_too() -> None:
    with pytest.raises(PipelineError, match=r"operator 'from_batch'.*parallelism"):
        env().from_batch([1], parallelism=0)


@pytest.mark.parametrize("operator", ["keyby", "map", "filter", "flatmap", "sink", "from_source", "from_service"])
def test_every_operator_refuses_parallelism_zero(operator) -> None:
    e = env()
    stream = e.from_batch([1])
    build = {
        "keyby": lambda: stream.keyby(lambda x: x, parallelism=0),
        "map": lambda: stream.map(lambda x: x, parallelism=0),
        "filter": lambda: stream.filter(lambda x: x, parallelism=0),
        "flatmap": lambda: stream.flatmap(lambda x: [x], parallelism=0),
        "sink": lambda: stream.sink(lambda x: None, parallelism=0),
        "from_source": lambda: e.from_source(lambda: None, parallelism=0),
        "from_service": lambda: e.from_service("svc", parallelism=0),
    }[operator]
    with pytest.raises(PipelineError, match="parallelism must be an int >= 1, got 0"):
        build()


@pytest.mark.parametrize("key", ["buffer_timeout", "service_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -0.5, "1", True])
def test_timeouts_must_be_finite_seconds(key, value) -> None:
    with pytest.raises(PipelineError, match=f"config {key} must be a finite number >= 0"):
        LocalEnvironment("cfg", config={key: value})


def test_copy_on_fanout_must_be_a_bool() -> None:
    with pytest.raises(PipelineError, match="copy_on_fanout must be True or False"):
        LocalEnvironment("cfg", config={"copy_on_fanout": "no"})


def test_nothing_can_be_added_after_submit() -> None:
    from sage.kernel.api.service import BaseService

    class Echo(BaseService):
        def process(self, x):
            return x

    e = env()
    stream = e.from_batch([1])
    stream.sink(Noop)
    e.submit(autostop=True)
    for build in (lambda: e.register_service("late", Echo), lambda: stream.map(lambda x: x),
                  lambda: e.from_batch([2]), lambda: e.from_service("late-pipeline")):
        with pytest.raises(PipelineError, match=r"already submitted.*build the whole pipeline before submit"):
            build()


def test_comap_class_without_a_method_per_input() -> None:
    e = env()
    a, b, c = e.from_batch([1]), e.from_batch([2]), e.from_batch([3])
    with pytest.raises(PipelineError,
                       match=r"comap operator OnlyMap0: 2 inputs need methods map0\.\.map1; missing map1"):
        a.connect(b).comap(OnlyMap0)
    with pytest.raises(PipelineError, match="missing map1, map2"):
        a.connect(b).connect(c).comap(OnlyMap0)


def test_comap_needs_a_comap_function_class() -> None:
    e = env()
    with pytest.raises(PipelineError, match="comap operator"):
        e.from_batch([1]).connect(e.from_batch([2])).comap(lambda x: x)


def test_join_needs_exactly_two_keyed_inputs() -> None:
    e = env()
    keyed = [e.from_batch([i]).keyby(lambda x: x) for i in range(3)]
    with pytest.raises(PipelineError, match="join operator Pair: needs exactly two inputs, got 3"):
        keyed[0].connect(keyed[1]).connect(keyed[2]).join(Pair)
    with pytest.raises(PipelineError, match=r"join operator Pair: input\(s\) \[1\] are not keyed"):
        keyed[0].connect(e.from_batch([9])).join(Pair)
    broadcast = e.from_batch([1]).keyby(lambda x: x, strategy="broadcast")
    unkeyed = broadcast.connect(e.from_batch([2]).map(lambda x: x))
    with pytest.raises(PipelineError, match=r"input\(s\) \[0, 1\] are not keyed"):
        unkeyed.join(Pair)


def test_keyed_stays_keyed_through_map_filter_and_flatmap() -> None:
    e = env()
    left = e.from_batch([1]).keyby(lambda x: x).map(lambda x: x).filter(bool).flatmap(lambda x: [x])
    right = e.from_batch([1]).keyby(lambda x: x)
    left.connect(right).join(Pair).sink(Noop)  # no error


def test_unknown_keyby_strategy() -> None:
    with pytest.raises(PipelineError, match="keyby operator: unknown strategy 'random'"):
        env().from_batch([1]).keyby(lambda x: x, strategy="random")


def test_unknown_config_key_and_bad_values() -> None:
    with pytest.raises(PipelineError, match=r"unknown config key.*queue_size"):
        LocalEnvironment("cfg", config={"queue_size": 2})
    with pytest.raises(PipelineError, match="queue_maxsize must be an int >= 1"):
        LocalEnvironment("cfg", config={"queue_maxsize": 0})
    with pytest.raises(PipelineError, match="buffer_timeout must be a finite number >= 0"):
        LocalEnvironment("cfg", config={"buffer_timeout": -1})
    with pytest.raises(PipelineError, match="transport must be one of"):
        LocalEnvironment("cfg", config={"transport": "carrier-pigeon"})


def test_unknown_on_error_policy() -> None:
    with pytest.raises(PipelineError, match=r"operator 'map'.*on_error must be one of fail, skip"):
        env().from_batch([1]).map(lambda x: x, on_error="ignore")


def test_wrong_function_kinds_and_arguments() -> None:
    e = env()
    stream = e.from_batch([1])
    with pytest.raises(PipelineError, match="map operator: Noop is not a MapFunction subclass"):
        stream.map(Noop)
    with pytest.raises(PipelineError, match="map operator: expected a MapFunction subclass or a callable, got 3"):
        stream.map(3)
    with pytest.raises(PipelineError, match="map operator: extra arguments"):
        stream.map(lambda x: x, 1)
    with pytest.raises(PipelineError, match="from_batch: expected a list, an iterable or a BatchFunction class"):
        e.from_batch("a string is not a batch")
    with pytest.raises(PipelineError, match="from_batch: parallelism=2 needs a list, tuple or range"):
        e.from_batch((x for x in range(3)), parallelism=2)
    with pytest.raises(PipelineError, match="from_source operator: MapFunction is not a SourceFunction"):
        e.from_source(MapFunction)


def test_submitting_twice() -> None:
    e = env()
    e.from_batch([1]).sink(Noop)
    job = e.submit(autostop=True)
    with pytest.raises(PipelineError, match=f"environment 'errors' was already submitted \\(job {job.job_id}\\)"):
        e.submit()


def test_empty_pipeline() -> None:
    with pytest.raises(PipelineError, match="the pipeline has no operators"):
        env().submit()


def test_a_stream_without_a_sink_warns_naming_the_operator() -> None:
    e = env()
    stream = e.from_batch([1, 2])
    stream.sink(Noop)
    stream.map(lambda x: x).map(MapFunction)  # discarded output
    with pytest.warns(UserWarning, match=r"operator 'MapFunction' \(map\) has no sink downstream"):
        job = e.submit()
    job.cancel()


def test_duplicate_operator_names_get_numbered() -> None:
    e = env()
    a = e.from_batch([1]).map(lambda x: x)
    b = a.map(lambda x: x)
    b.sink(Noop)
    assert [t.basename for t in e.transformations] == ["from_batch", "map", "map2", "Noop"]
