"""The worker loop of one task instance, the same on every backend."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ...errors import describe_error
from ..communication.errors import SendCancelled, TransportError
from ..communication.router import Batch, CheckpointBarrier, FeedbackBatch, Packet, StopSignal
from ..context import TaskContext
from ..graph import OperatorSpec
from ..loop import LoopEnd, LoopTermination, LoopToken
from ..operator import Operator, SourceOperator, create_operator
from .checkpointing import TaskCheckpoints
from .delivery import put_control

IDLE_WAIT = 0.2
"""Seconds an idle task blocks on its input before re-checking for cancellation."""

GET_BATCH = 64
"""Most items (batches, signals) taken from the input queue at once."""

SOURCE_RUN = 256
"""Records a list, tuple or range source sends between two checks for a stop."""

SOURCE_MAX_BACKOFF = 0.05
"""Longest wait between polls of a SourceFunction that has nothing to give."""

_LOGGED_ERRORS = 10

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


class TaskFailure(Exception):
    """A task failed; `task_name` names it and `__cause__` is the original exception."""

    def __init__(self, task_name: str, error: BaseException) -> None:
        super().__init__(f"task {task_name!r} failed: {describe_error(error)}")
        self.task_name = task_name


class Task:
    """Runs one operator instance: sources pull from their function, others read their input queue.

    `run()` blocks until the task is done and returns "finished" or
    "cancelled", or raises `TaskFailure` (with the user's exception as
    `__cause__`). A stream task finishes after a stop signal from every
    upstream instance; then it closes its function, flushes its router and
    sends one stop signal downstream. `stop()` makes a source end its stream
    (the job drains); `cancel()` makes every loop exit within `IDLE_WAIT`.
    With checkpoints, `trigger_checkpoint` and `notify_checkpoint_complete`
    reach its `TaskCheckpoints` (see `checkpointing`).

    In a feedback loop (`ctx.loop`), stop signals come only from upstream
    instances outside the loop; the task finishes once they all came and the
    loop has ended, which its `LoopTermination` finds out with the loop's
    other instances (see `runtime.loop`).
    """

    def __init__(self, ctx: TaskContext, spec: OperatorSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.status = "created"
        self.records_in = 0
        self.errors = 0
        # (seconds idle in finished waits, start of the wait in progress or 0.0): one tuple, replaced
        # whole, so metrics read on another thread see a wait as it happens and never half an update.
        self._idle = (0.0, 0.0)
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.operator: Operator | None = None
        role = ctx.loop
        self._inner = role.inner_upstreams if role is not None else frozenset()
        self._expected = set(ctx.upstream_names) - self._inner
        self._received: set[str] = set()
        # Loop channels never end while the loop runs: an alignment waits for them, but for
        # feedback channels (see `checkpointing`).
        self._loop_channels = self._inner - role.feedback_upstreams if role is not None else frozenset()
        self.loop = LoopTermination(role.loop, role.position, self._loop_sent) if role is not None else None
        self.checkpoints = TaskCheckpoints(ctx)

    @property
    def name(self) -> str:
        return self.ctx.name

    def stop(self) -> None:
        """Ask a source to end its stream; downstream tasks then drain and finish."""
        self.ctx.stop_event.set()

    def cancel(self) -> None:
        """Stop now: loops exit, blocked sends give up, nothing more is processed."""
        self.ctx.stop_event.set()
        self.ctx.cancel_event.set()

    def trigger_checkpoint(self, checkpoint_id: int) -> None:
        """A source injects barrier `checkpoint_id` at its next safe point; returns at once."""
        self.checkpoints.trigger(checkpoint_id)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` is complete; returns at once (see `TaskCheckpoints.notify`)."""
        self.checkpoints.notify(checkpoint_id)

    def run(self) -> str:
        self.started_at = time.monotonic()
        self.status = "running"
        try:
            try:
                operator = self.operator = create_operator(self.spec, self.ctx, self._record_error)
                self.checkpoints.restore(operator)
                operator.open()
                for input_index, payloads, keys in self.checkpoints.take_replay():
                    self.records_in += len(payloads)
                    operator.process_batch(payloads, keys, input_index)
            except (SendCancelled, TaskFailure):  # cancelled during an async open() or a replay's wait for room
                raise
            except Exception as exc:
                raise TaskFailure(self.name, exc) from exc
            if isinstance(operator, SourceOperator):
                done = self._run_source(operator) and self._source_covered(operator)
            else:
                done = self._run_stream(operator)
            if done and not self.ctx.cancel_event.is_set():
                self._finish(operator)
                self.status = "finished"
            else:
                self.status = "cancelled"
        except SendCancelled:
            self.status = "cancelled"
        except TaskFailure:
            self.status = "failed"
            raise
        finally:
            self.finished_at = time.monotonic()
            if self.operator is not None:
                self.operator.release()
            self.ctx.close_services()
        return self.status

    def _finish(self, operator: Operator) -> None:
        try:
            if self.loop is not None:
                self.ctx.router.close_loop_edges()
            operator.close()  # a flatmap's close() may still send, and be cancelled doing so
            if self.loop is not None and self.ctx.router.has_loop_pending():
                raise RuntimeError("close() emitted records after the loop ended; they cannot go round it again "
                                   "(emit them from execute(), or from an operator after the loop)")
            if self.checkpoints.active:
                self.checkpoints.send_final(operator)
        except (SendCancelled, TaskFailure):  # a TaskFailure: an async call in flight failed (see async_operator)
            raise
        except Exception as exc:
            raise TaskFailure(self.name, exc) from exc
        self.ctx.send_stop_signal()
        if self.checkpoints.active and not self._guarded(self.checkpoints.wait_for_final_commit, operator):
            raise SendCancelled(f"{self.name}: cancelled while waiting for its final commit")

    def _source_covered(self, operator: Operator) -> bool:
        """With checkpoints, a source that ran out of input ends only once a checkpoint behind its last
        record is complete (see `TaskCheckpoints.end_of_input`); False when cancelled first."""
        if not self.checkpoints.active or self.ctx.cancel_event.is_set():
            return True
        return self._guarded(self.checkpoints.end_of_input, operator)

    def _checkpoint_point(self, operator: Operator, open_channels: set[str] | None = None) -> None:
        """Between two records or batches: inject requested barriers (sources, and loop entries whose
        `open_channels` are none), deliver completions."""
        self._guarded(self.checkpoints.inject_requested, operator, open_channels)
        self._guarded(self.checkpoints.deliver_completions, operator)

    def _record_error(self, exc: Exception) -> None:
        """Fail the task on `exc`, or with `on_error="skip"` count and log it and return.

        Cancellation (`SendCancelled`) and an existing `TaskFailure` always
        propagate; a `TransportError` (a downstream queue failed, not a
        record) always fails the task.
        """
        if isinstance(exc, (SendCancelled, TaskFailure)):
            raise exc
        self.errors += 1
        if self.spec.on_error != "skip" or isinstance(exc, TransportError):
            raise TaskFailure(self.name, exc) from exc
        if self.errors <= _LOGGED_ERRORS or self.errors % 1000 == 0:
            logger.warning("task %s skipped a record (error %d): %r", self.name, self.errors, exc,
                           exc_info=exc if self.errors <= _LOGGED_ERRORS else None)

    # ------------------------------------------------------------------ sources
    def _run_source(self, operator: SourceOperator) -> bool:
        runs = operator.record_runs(SOURCE_RUN)
        if runs is not None:
            return self._send_runs(operator, runs)
        records = operator.records()
        if records is None:
            return self._poll_source(operator)
        is_stopped = self.ctx.stop_event.is_set
        send_batch = self.ctx.router.send_batch
        checkpointing = self.checkpoints.active
        while True:
            sent = 0
            try:
                for record in records:
                    # The record is taken from the function: it goes before any barrier (whose state counts
                    # it taken) and before a stop is honoured (a stopped source's last checkpoint counts it).
                    send_batch([record])
                    sent += 1
                    if checkpointing:
                        self._checkpoint_point(operator)
                    if is_stopped():
                        return True
                return True
            except Exception as exc:
                self._record_error(exc)
            finally:
                operator.records_out += sent

    def _send_runs(self, operator: SourceOperator, runs: Iterator[Sequence[Any]]) -> bool:
        """Send a sequence's records, checking for a stop between runs (the hottest source loop). A run taken
        from the sequence is sent before a barrier or a stop: both count it taken."""
        is_stopped = self.ctx.stop_event.is_set
        send_batch = self.ctx.router.send_batch
        checkpointing = self.checkpoints.active
        for run in runs:
            send_batch(run if isinstance(run, list) else list(run))
            operator.records_out += len(run)
            if checkpointing:
                self._checkpoint_point(operator)
            if is_stopped():
                break
        return True

    def _poll_source(self, operator: SourceOperator) -> bool:
        stop = self.ctx.stop_event
        router = self.ctx.router
        poll, send_batch = operator.poll, router.send_batch
        checkpointing = self.checkpoints.active
        backoff = 0.0
        while not stop.is_set():
            if checkpointing:
                self._checkpoint_point(operator)
            try:
                record = poll()
            except Exception as exc:
                self._record_error(exc)
                record = None  # a skipped failure waits like "nothing now": no spinning on a broken source
            if record is None:
                # Nothing now: push out what is batched, then wait a little longer each time.
                router.flush()
                backoff = min(SOURCE_MAX_BACKOFF, backoff * 2 or 0.0005)
                idle, started = self._idle[0], time.monotonic()
                self._idle = (idle, started)
                stop.wait(backoff)
                self._idle = (idle + time.monotonic() - started, 0.0)
                continue
            if record.__class__ is StopSignal:
                return True
            backoff = 0.0
            send_batch([record])
            operator.records_out += 1
        return True

    # ------------------------------------------------------------------ stream tasks
    def _run_stream(self, operator: Operator) -> bool:
        ctx = self.ctx
        expected, received = self._expected, self._received
        assert ctx.input_qd is not None, "a stream task reads an input queue"
        get_many = operator.input_reader(ctx.input_qd.get_many)
        get_size = GET_BATCH
        router = ctx.router
        cancel = ctx.cancel_event
        checkpointing = self.checkpoints.active
        loop = self.loop
        while received != expected or (loop is not None and not loop.ended):
            if cancel.is_set():
                return False
            if checkpointing:
                self._checkpoint_point(operator, self._open_channels())
            batch = None
            at_rest_work = loop is not None and received == expected and loop.has_work_at_rest
            if router.has_pending() or at_rest_work:
                # Keep coalescing while input is there; going idle, nothing may wait in a batch.
                try:
                    batch = get_many(get_size, 0)
                except queue.Empty:
                    router.flush()
                    if at_rest_work and not operator.holds_records():
                        self._loop_at_rest()
                        continue
            if batch is None:
                # One blocking get, not a non-blocking one first: on a remote queue each is a round trip.
                idle, started = self._idle[0], time.monotonic()
                self._idle = (idle, started)
                try:
                    batch = get_many(get_size, IDLE_WAIT)
                except queue.Empty:
                    continue
                finally:
                    self._idle = (idle + time.monotonic() - started, 0.0)
            while batch:
                batch = self._process_items(operator, batch)
        return True

    def _process_items(self, operator: Operator, items: list[Any]) -> list[Any]:
        """Process input items in order; returns what to process next when an alignment completed on
        the way (the items it held, then the rest of `items`), else an empty list."""
        process_batch = operator.process_batch
        checkpoints = self.checkpoints
        loop, inner = self.loop, self._inner
        for position, item in enumerate(items):
            cls = item.__class__
            if checkpoints.aligner.aligning is not None and checkpoints.aligner.holds(getattr(item, "source", None)):
                checkpoints.aligner.hold(item)
            elif cls is Batch or cls is FeedbackBatch:
                self.records_in += len(item.payloads)
                if loop is not None and item.source in inner:
                    checkpoints.log_fed_back(item)
                    process_batch(item.payloads, item.keys, item.input_index)
                    loop.on_records(len(item.payloads))
                else:
                    process_batch(item.payloads, item.keys, item.input_index)
            elif cls is CheckpointBarrier:
                if item.source in checkpoints.feedback_channels and self._guarded(checkpoints.feedback_barrier, item):
                    continue
                released = self._guarded(checkpoints.on_barrier, operator, item, self._open_channels())
                if released:
                    return released + items[position + 1:]
            elif cls is StopSignal:
                if item.source in self._expected:
                    self._received.add(item.source)
                    # A channel that ended sends no barrier: an alignment may be complete now.
                    released = self._guarded(checkpoints.check_alignment, operator, self._open_channels())
                    if released:
                        return released + items[position + 1:]
                else:
                    logger.warning("task %s ignored a stop signal from unknown source %r", self.name, item.source)
            elif cls is LoopToken and loop is not None:
                loop.on_token(item)
            elif cls is LoopEnd and loop is not None:
                loop.on_end()
                # The loop is empty and its external inputs ended: what may follow is a barrier that
                # was still going round; the task finishes without it (its final part stands for it).
                return []
            elif isinstance(item, Packet):
                self.records_in += 1
                process_batch([item.payload], [item.partition_key] if item.is_keyed() else None, item.input_index)
            else:
                logger.warning("task %s ignored an unknown input item %r", self.name, item)
        return []

    def _open_channels(self) -> set[str]:
        """The channels an alignment waits for: those that have not ended, loop channels included
        (feedback channels excepted, see `checkpointing`)."""
        return (self._expected - self._received) | self._loop_channels

    # ------------------------------------------------------------------ loops
    def _loop_sent(self) -> int:
        return self.ctx.router.loop_sent

    def _loop_at_rest(self) -> None:
        """At rest in a loop (external inputs ended, queue empty, router flushed): pass the token on,
        or end the loop (see `runtime.loop`)."""
        assert self.loop is not None and self.ctx.loop is not None
        message = self.loop.at_rest()
        cancel = self.ctx.cancel_event
        if isinstance(message, LoopToken):
            target, descriptor = self.ctx.loop.next_member
            put_control(descriptor, message, cancel, f"{self.name}: passing the loop's token to {target}")
        elif isinstance(message, LoopEnd):
            for target, descriptor in self.ctx.loop.ring:
                if target != self.name:
                    put_control(descriptor, message, cancel, f"{self.name}: ending the loop at {target}")

    def _guarded(self, step: Callable[..., _T], *args: Any) -> _T:
        """Run a checkpoint step; its failure (a state that cannot be pickled, a failing commit) fails the task
        (an existing `TaskFailure` and cancellation pass as they are)."""
        try:
            return step(*args)
        except (SendCancelled, TaskFailure):
            raise
        except Exception as exc:
            raise TaskFailure(self.name, exc) from exc

    # ------------------------------------------------------------------ metrics
    @property
    def idle_seconds(self) -> float:
        """Time spent waiting for input (a source: for its function to have a record), a wait in progress included."""
        return self.idle_seconds_at(time.monotonic())

    def idle_seconds_at(self, now: float) -> float:
        """`idle_seconds` as of `now` (a `time.monotonic()` reading), for consistent metrics."""
        total, since = self._idle
        return total + (max(0.0, now - since) if since else 0.0)

    @property
    def records_out(self) -> int:
        """Records this task has emitted."""
        operator = self.operator
        return 0 if operator is None else operator.records_out

    def metrics(self) -> dict[str, Any]:
        """Plain-data counters of this task instance (cumulative since it started) and its input queue's fill.

        Safe to call from any thread while the task runs. The times add up:
        busy + idle + backpressure = elapsed (busy is what remains: time in
        the function and the task's own code). The queue fields are None for
        a source and once the task no longer runs (its queue may be released).
        """
        ctx = self.ctx
        # One clock reading for every figure: waits in progress count up to `now`, so the parts
        # never add up to more than `elapsed` (busy is never negative).
        finished_at = self.finished_at
        now = finished_at if finished_at is not None else time.monotonic()
        idle, backpressure = self.idle_seconds_at(now), ctx.router.backpressure_seconds_at(now)
        elapsed = (now - self.started_at) if self.started_at is not None else 0.0
        queued = maxsize = None
        input_qd = ctx.input_qd
        if input_qd is not None and self.status == "running" and input_qd.is_initialized():
            queued, maxsize = input_qd.qsize(), input_qd.maxsize
        return {
            "name": self.name,
            "operator": ctx.basename,
            "parallel_index": ctx.parallel_index,
            "kind": self.spec.kind,
            "status": self.status,
            "records_in": self.records_in,
            "records_out": self.records_out,
            "errors": self.errors,
            "elapsed_seconds": elapsed,
            "idle_seconds": idle,
            "backpressure_seconds": backpressure,
            "busy_seconds": max(0.0, elapsed - idle - backpressure),  # float rounding only
            "input_queue_size": queued,
            "input_queue_maxsize": maxsize,
            "input_queue_load": min(1.0, queued / maxsize) if queued is not None and maxsize else None,
            "fed_back": ctx.router.fed_back,
            "alignment_seconds": self.checkpoints.alignment_seconds,
            "last_checkpoint": self.checkpoints.last_barrier,
            **(self.operator.metrics() if self.operator is not None else {}),
        }
