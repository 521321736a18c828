"""Operators: run one user function instance on batches of records and send the results on.

A stream operator's `process_batch(payloads, keys, input_index)` handles the
records of one `Batch` taken from the input queue (the task loop keeps
control items out of it): one Python call per batch rather than per record
leaves the function call as the per-record cost, and the results go to the
router as one run. An exception in the function goes to `on_error`, which
either raises (the task fails) or counts it and returns (that record is
skipped and the batch goes on).

Keys: a record keeps the key it arrived with (a keyed stream stays keyed);
`keys` is None when the batch's records have none. Keys arrive only over hash
edges (the router sends none elsewhere), so routing decides keyed-ness, as
the execution graph says. A keyby makes new keys and checks each one.

Nothing here changes a record or a list it was given: outputs are new lists
(a record the function returns unchanged is passed on as the same object,
which now belongs to the one downstream delivery or is copied by the router
on fan-out).

Service pipelines (`spec.enveloped`): records travel as `Envelope`s around
the caller's payloads. The operator unwraps them, runs the user function on
the payloads, and wraps each output in the envelope of the record it came
from; user functions never see envelopes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import Any

from ..communication.router import UNKEYED, check_key
from ..context import TaskContext
from ..graph import OperatorSpec

ErrorHandler = Callable[[Exception], None]

logger = logging.getLogger(__name__)


class Operator:
    """Builds the function instance, wires it to the task context and emits output.

    `records_out` counts what the operator really emitted; other threads read
    it (metrics) without locks.
    """

    def __init__(self, spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> None:
        self.spec = spec
        self.ctx = ctx
        self.function = spec.create_function()
        self.function.ctx = ctx
        self.router = ctx.router
        self.on_error = on_error
        self.enveloped = spec.enveloped
        self.records_out = 0

    def open(self) -> None:
        self.function.open()

    def close(self) -> None:
        self.function.close()

    def input_reader(self, read: Callable[[int, float], list[Any]]) -> Callable[[int, float], list[Any]]:
        """What the task loop takes input with, given its input queue's `get_many(size, timeout)`: that
        same function here. An operator that must also wake up for other work (finished async calls)
        returns its own."""
        return read

    def holds_records(self) -> bool:
        """True while records taken have outputs still to come (an async operator's calls in flight): the
        task is not at rest, whatever its queue holds. Never here."""
        return False

    def release(self) -> None:
        """Free what the operator holds beyond its function (threads, an event loop); called once, however
        the task ended (after `close()` when it finished)."""

    def metrics(self) -> dict[str, Any]:
        """The operator's own figures for its task's metrics (none here)."""
        return {}

    def snapshot_state(self) -> dict[str, Any]:
        """The operator's state for a checkpoint: the function's `get_state()`, if it has one."""
        get_state = getattr(self.function, "get_state", None)
        return {} if get_state is None else {"function": get_state()}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Give the function back the state `snapshot_state` took (before `open()`)."""
        if "function" in state:
            self.function.restore_state(state["function"])

    def process_batch(self, payloads: list[Any], keys: list[Any] | None, input_index: int) -> None:
        """Handle the records of one batch, in order."""
        if self.enveloped:
            envelopes = payloads
            outputs, origins, keys = self.apply([e.payload for e in envelopes], keys, input_index)
            if origins is None:
                outputs = [e.carrying(out) for e, out in zip(envelopes, outputs, strict=True)]
            else:
                outputs = [envelopes[i].carrying(out) for i, out in zip(origins, outputs, strict=True)]
        else:
            outputs, origins, keys = self.apply(payloads, keys, input_index)
        if outputs:
            self.emit(outputs, keys)

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        """Run the function over one batch's records: `(outputs, origins, output keys)`.

        `origins[j]` is the position of the input record output `j` came from
        (None when output `j` came from input `j` for every j); the output
        keys are aligned with the outputs (None for unkeyed outputs).
        """
        raise NotImplementedError

    def emit(self, outputs: list[Any], keys: list[Any] | None = None) -> None:
        """Send a run of output records downstream (keys: one per output, or None)."""
        self.records_out += len(outputs)
        self.router.send_batch(outputs, keys)


def _kept(count: int, skipped: list[int]) -> list[int] | None:
    """Positions 0..count-1 without the skipped ones (None when nothing was skipped)."""
    if not skipped:
        return None
    dropped = set(skipped)
    return [i for i in range(count) if i not in dropped]


def _aligned(keys: list[Any] | None, origins: list[int] | None) -> list[Any] | None:
    """The keys of the outputs: each output keeps the key of the input it came from."""
    if keys is None or origins is None:
        return keys
    return [keys[i] for i in origins]


def _one_each(execute: Callable[[Any], Any], payloads: list[Any], on_error: ErrorHandler
              ) -> tuple[list[Any], list[int] | None]:
    """`execute` over every record, one output each; a record whose call fails (and that
    `on_error` lets go) is skipped. Returns (outputs, origins)."""
    out: list[Any] = []
    append = out.append
    records = iter(payloads)
    skipped: list[int] = []
    while True:
        try:
            for payload in records:  # resumes after a skipped record: the iterator remembers where it was
                append(execute(payload))
            break
        except Exception as exc:
            on_error(exc)
            skipped.append(len(out) + len(skipped))
    return out, _kept(len(payloads), skipped)


class SourceOperator(Operator):
    """Pulls records from a BatchFunction/SourceFunction; the task loop sends them."""

    def record_runs(self, size: int) -> Iterator[Sequence[Any]] | None:
        """Runs of at most `size` records when the source is a list, tuple or range, else None."""
        runs = getattr(self.function, "runs", None)
        return runs(size) if runs is not None else None

    def records(self) -> Iterator[Any] | None:
        """An iterator of records for a bounded source, or None for a polled SourceFunction."""
        iterator = getattr(self.function, "iterator", None)
        if iterator is not None:
            records: Iterator[Any] = iterator()
            return records
        if self.spec.kind == "batch":
            return iter(self.function.execute, None)
        return None

    def poll(self) -> Any:
        """One call of a SourceFunction: a record, None (nothing now) or a StopSignal."""
        return self.function.execute()


class MapOperator(Operator):
    """One output per input record."""

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        out, origins = _one_each(self.function.execute, payloads, self.on_error)
        return out, origins, _aligned(keys, origins)


class FilterOperator(Operator):
    """Passes on the records the predicate accepts."""

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        execute = self.function.execute
        out: list[Any] = []
        origins: list[int] = []
        position = 0
        count = len(payloads)
        while position < count:
            try:
                while position < count:
                    payload = payloads[position]
                    if execute(payload):
                        out.append(payload)
                        origins.append(position)
                    position += 1
            except Exception as exc:
                self.on_error(exc)
                position += 1
        kept = None if len(origins) == count else origins
        return out, kept, _aligned(keys, kept)


class FlatMapOperator(Operator):
    """Zero or more outputs per record: `collect()`ed ones first, then the returned iterable."""

    def open(self) -> None:
        super().open()
        # collect() appends to this list; holding it here saves a lookup per record.
        if getattr(self.function, "_collected", None) is None:
            self.function._collected = []
        self._collected: list[Any] = self.function._collected

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        execute, collected = self.function.execute, self._collected
        out: list[Any] = []
        origins: list[int] = []
        for position, payload in enumerate(payloads):
            before = len(out)
            try:
                result = execute(payload)
                if collected:
                    out.extend(collected)
                    collected.clear()
                if result is not None:
                    out.extend(result)
            except Exception as exc:
                collected.clear()  # a skipped record's output goes nowhere, collect()ed or returned
                del out[before:]
                self.on_error(exc)
                continue
            origins.extend(repeat(position, len(out) - before))
        return out, origins, _aligned(keys, origins)

    def close(self) -> None:
        super().close()
        if self._collected:
            outputs = self._collected[:]
            self._collected.clear()
            if self.enveloped:
                # Records collected at end of stream answer no request: there is nobody to send them to.
                logger.warning("%s: %d record(s) collect()ed in close() of a service pipeline were dropped",
                               self.ctx.name, len(outputs))
                return
            self.emit(outputs)  # no key: they belong to no input record


class KeyByOperator(Operator):
    """Gives each record its partition key (checked: an unsupported key fails or skips that record).

    The record itself is unchanged; the edge after the keyby routes by the
    keys (hash), or ignores them (broadcast, round_robin).
    """

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        key_of = self.function.execute

        def checked_key(payload: Any) -> Any:
            key = key_of(payload)
            check_key(key)
            return key

        new_keys, kept = _one_each(checked_key, payloads, self.on_error)
        return (payloads if kept is None else [payloads[i] for i in kept]), kept, new_keys


class SinkOperator(Operator):
    """Consumes records; sends nothing."""

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        execute = self.function.execute
        records = iter(payloads)
        while True:
            try:
                for payload in records:
                    execute(payload)
                break
            except Exception as exc:
                self.on_error(exc)
        return [], None, None


class CoMapOperator(Operator):
    """`map{i}` of the function handles records of input `i`; one output each."""

    def open(self) -> None:
        super().open()
        self._methods = [getattr(self.function, f"map{i}") for i in range(self.spec.num_inputs)]

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        out, origins = _one_each(self._methods[input_index], payloads, self.on_error)
        return out, origins, _aligned(keys, origins)


class JoinOperator(Operator):
    """`execute(payload, key, input_index)` returns the outputs, keyed by the same key."""

    def apply(self, payloads: list[Any], keys: list[Any] | None, input_index: int
              ) -> tuple[list[Any], list[int] | None, list[Any] | None]:
        execute = self.function.execute
        keys = keys if keys is not None else [UNKEYED] * len(payloads)
        out: list[Any] = []
        origins: list[int] = []
        for position, (payload, key) in enumerate(zip(payloads, keys, strict=True)):
            try:
                outputs = execute(payload, key, input_index)
            except Exception as exc:
                self.on_error(exc)
                continue
            if outputs:
                before = len(out)
                out.extend(outputs)
                origins.extend(repeat(position, len(out) - before))
        return out, origins, _aligned(keys, origins)


SYNC_OPERATORS: dict[str, type[Operator]] = {
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
