"""Operators: run one user function instance on runs of packets and send the results on.

A stream operator's `process_batch(packets)` handles a run of data packets
taken from the input queue in one go (the task loop keeps stop signals out
of it): one Python call per run rather than per record leaves the function
call and the send as the per-record cost. An exception in the function, or
in routing its output, goes to `on_error`, which either raises (the task
fails) or counts it and returns (the record is skipped and the run goes on).

A packet belongs to the one task it was delivered to (the router gives
every extra delivery its own copy), so one-to-one operators (map, filter,
keyby, comap) send the input packet on with its payload replaced instead of
allocating one. Output keeps the input's partition key when the input was
routed by hash (a keyed stream stays keyed); "broadcast" and "round_robin"
apply to one edge only, so such outputs are routed round-robin again. A
reused packet keeps its timestamp: when the source emitted the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Iterable, Iterator

from ...api.function.source_function import IterableBatchFunction
from ..communication.router import Packet
from ..context import TaskContext
from ..graph import OperatorSpec

ErrorHandler = Callable[[Exception], None]


class Operator:
    """Builds the function instance, wires it to the task context and counts output.

    `one_to_one` operators emit exactly one record per record they process
    without error, so their output count is derived (records in minus
    errors) rather than counted per record; the others count `records_out`
    themselves. Counters are read by other threads (metrics) without locks.
    """

    one_to_one = False

    def __init__(self, spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> None:
        self.spec = spec
        self.ctx = ctx
        self.function = spec.create_function()
        self.function.ctx = ctx
        self.send: Callable[[Packet], int] = ctx.router.send
        self.on_error = on_error
        self.records_out = 0

    def open(self) -> None:
        self.function.open()

    def close(self) -> None:
        self.function.close()

    def process_batch(self, packets: list[Packet]) -> None:
        """Handle a run of data packets, in order."""
        raise NotImplementedError

    def send_all(self, payloads: Iterable[Any], packet: Packet | None = None) -> None:
        """Send each payload on in a new packet, keyed like `packet` when `packet` was hash-routed."""
        send = self.send
        count = 0
        try:
            if packet is not None and packet.partition_strategy == "hash":
                key = packet.partition_key
                for payload in payloads:
                    send(Packet(payload, 0, key, "hash"))
                    count += 1
            else:
                for payload in payloads:
                    send(Packet(payload))
                    count += 1
        finally:
            self.records_out += count


def forward(packet: Packet, send: Callable[[Packet], int]) -> None:
    """Send a reused packet on: hash keys stay, any other strategy was for the edge it came by."""
    strategy = packet.partition_strategy
    if strategy is not None and strategy != "hash":
        packet.partition_strategy = packet.partition_key = None
    send(packet)


class SourceOperator(Operator):
    """Pulls records from a BatchFunction/SourceFunction; the task loop sends them."""

    def record_runs(self, size: int) -> Iterator[Sequence[Any]] | None:
        """Runs of at most `size` records when the source is a list, tuple or range, else None."""
        if isinstance(self.function, IterableBatchFunction):
            return self.function.runs(size)
        return None

    def records(self) -> Iterator[Any] | None:
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
    """One output per input record, in the input's packet."""

    one_to_one = True

    def process_batch(self, packets: list[Packet]) -> None:
        execute, send, on_error = self.function.execute, self.send, self.on_error
        for packet in packets:
            try:
                packet.payload = execute(packet.payload)
                # forward(), inlined: this is the hottest loop of most pipelines.
                strategy = packet.partition_strategy
                if strategy is not None and strategy != "hash":
                    packet.partition_strategy = packet.partition_key = None
                send(packet)
            except Exception as exc:
                on_error(exc)


class FilterOperator(Operator):
    """Sends on, in their own packets, the records the predicate accepts."""

    def process_batch(self, packets: list[Packet]) -> None:
        execute, send = self.function.execute, self.send
        for packet in packets:
            try:
                if execute(packet.payload):
                    self.records_out += 1
                    forward(packet, send)
            except Exception as exc:
                self.on_error(exc)


class FlatMapOperator(Operator):
    """Zero or more outputs per record: `collect()`ed ones first, then the returned iterable."""

    def open(self) -> None:
        super().open()
        # collect() appends to this list; holding it here saves a lookup per record.
        if getattr(self.function, "_collected", None) is None:
            self.function._collected = []
        self._collected: list[Any] = self.function._collected

    def process_batch(self, packets: list[Packet]) -> None:
        execute, collected, send_all = self.function.execute, self._collected, self.send_all
        for packet in packets:
            try:
                result = execute(packet.payload)
                if collected:
                    send_all(self._take_collected(), packet)
                if result is not None:
                    send_all(result, packet)
            except Exception as exc:
                collected.clear()  # a skipped record's collect()ed output goes nowhere
                self.on_error(exc)

    def close(self) -> None:
        super().close()
        self.send_all(self._take_collected())

    def _take_collected(self) -> list[Any]:
        items = self._collected[:]
        self._collected.clear()
        return items


class KeyByOperator(Operator):
    """Sets each packet's partition key and the edge's strategy; the record is unchanged."""

    one_to_one = True

    def process_batch(self, packets: list[Packet]) -> None:
        key_of, send, strategy = self.function.execute, self.send, self.spec.strategy
        for packet in packets:
            try:
                packet.partition_key = key_of(packet.payload)
                packet.partition_strategy = strategy
                send(packet)
            except Exception as exc:
                self.on_error(exc)


class SinkOperator(Operator):
    """Consumes records; sends nothing."""

    def process_batch(self, packets: list[Packet]) -> None:
        execute = self.function.execute
        for packet in packets:
            try:
                execute(packet.payload)
            except Exception as exc:
                self.on_error(exc)


class CoMapOperator(Operator):
    """`map{i}` of the function handles records of input `i`; one output each."""

    one_to_one = True

    def open(self) -> None:
        super().open()
        self._methods = [getattr(self.function, f"map{i}") for i in range(self.spec.num_inputs)]

    def process_batch(self, packets: list[Packet]) -> None:
        methods, send = self._methods, self.send
        for packet in packets:
            try:
                packet.payload = methods[packet.input_index](packet.payload)
                packet.input_index = 0  # the output is one stream: input 0 of what comes next
                forward(packet, send)
            except Exception as exc:
                self.on_error(exc)


class JoinOperator(Operator):
    """`execute(payload, key, input_index)` returns the outputs (keyed by the same key)."""

    def process_batch(self, packets: list[Packet]) -> None:
        execute, send_all = self.function.execute, self.send_all
        for packet in packets:
            try:
                outputs = execute(packet.payload, packet.partition_key, packet.input_index)
                if outputs:
                    send_all(outputs, packet)
            except Exception as exc:
                self.on_error(exc)


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


def create_operator(spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> Operator:
    """The operator for `spec.kind`, with a fresh function instance bound to `ctx`."""
    return OPERATORS[spec.kind](spec, ctx, on_error)
