"""Operators: run one user function instance on records and emit the results.

Each operator's `process(packet)` handles one input packet. Output packets keep
the input's partition key when it was routed by hash (a keyed stream stays
keyed); broadcast and round-robin apply to one edge only.
"""

from __future__ import annotations

from typing import Any, Callable

from ...api.function.source_function import IterableBatchFunction
from ..communication.router import Packet
from ..context import TaskContext
from ..graph import OperatorSpec


class Operator:
    """Builds the function instance, wires it to the task context and counts output."""

    def __init__(self, spec: OperatorSpec, ctx: TaskContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.function = spec.create_function()
        self.function.ctx = ctx
        self.send: Callable[[Packet], int] = ctx.router.send
        self.records_out = 0

    def open(self) -> None:
        self.function.open()

    def close(self) -> None:
        self.function.close()

    def process(self, packet: Packet) -> None:
        raise NotImplementedError

    def emit(self, payload: Any, packet: Packet | None = None) -> None:
        """Send `payload` on, keyed like `packet` when `packet` was hash-routed."""
        self.records_out += 1
        if packet is not None and packet.partition_strategy == "hash":
            self.send(Packet(payload, 0, packet.partition_key, "hash"))
        else:
            self.send(Packet(payload))


class SourceOperator(Operator):
    """Pulls records from a BatchFunction/SourceFunction; see `records()`."""

    def records(self) -> Any:
        """An iterator of records for a bounded source, or None for a polled SourceFunction."""
        if isinstance(self.function, IterableBatchFunction):
            return self.function.iterator()
        if self.spec.kind == "batch":
            return iter(self.function.execute, None)
        return None

    def poll(self) -> Any:
        """One call of a SourceFunction: a record, None (nothing now) or a StopSignal."""
        return self.function.execute()


class MapOperator(Operator):
    def process(self, packet: Packet) -> None:
        self.emit(self.function.execute(packet.payload), packet)


class FilterOperator(Operator):
    def process(self, packet: Packet) -> None:
        if self.function.execute(packet.payload):
            self.emit(packet.payload, packet)


class FlatMapOperator(Operator):
    def process(self, packet: Packet) -> None:
        result = self.function.execute(packet.payload)
        self._drain_collected(packet)
        if result is not None:
            for item in result:
                self.emit(item, packet)

    def close(self) -> None:
        super().close()
        self._drain_collected(None)

    def _drain_collected(self, packet: Packet | None) -> None:
        collected = getattr(self.function, "_collected", None)
        if collected:
            items = collected[:]
            collected.clear()
            for item in items:
                self.emit(item, packet)


class KeyByOperator(Operator):
    def process(self, packet: Packet) -> None:
        key = self.function.execute(packet.payload)
        self.records_out += 1
        self.send(Packet(packet.payload, 0, key, self.spec.strategy))


class SinkOperator(Operator):
    def process(self, packet: Packet) -> None:
        self.function.execute(packet.payload)


class CoMapOperator(Operator):
    def open(self) -> None:
        super().open()
        self._methods = [getattr(self.function, f"map{i}") for i in range(self.spec.num_inputs)]

    def process(self, packet: Packet) -> None:
        self.emit(self._methods[packet.input_index](packet.payload), packet)


class JoinOperator(Operator):
    def process(self, packet: Packet) -> None:
        outputs = self.function.execute(packet.payload, packet.partition_key, packet.input_index)
        if outputs:
            for item in outputs:
                self.emit(item, packet)


OPERATORS: dict[str, type[Operator]] = {
    "batch": SourceOperator,
    "source": SourceOperator,
    "map": MapOperator,
    "filter": FilterOperator,
    "flatmap": FlatMapOperator,
    "keyby": KeyByOperator,
    "sink": SinkOperator,
    "comap": CoMapOperator,
    "join": JoinOperator,
}


def create_operator(spec: OperatorSpec, ctx: TaskContext) -> Operator:
    """The operator for `spec.kind`, with a fresh function instance bound to `ctx`."""
    return OPERATORS[spec.kind](spec, ctx)

