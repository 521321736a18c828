"""Async operators: many calls of one function instance in flight at once, on the instance's event loop.

`map_async` (one output per record, from a coroutine) and `flatmap_async`
(the records an async generator yields, as they come). Per instance:

- The task thread takes a record only while fewer than `capacity` are held
  (calls in flight, and results waiting for their turn to be emitted); a
  full instance stops taking input, so its input queue fills and its
  upstream blocks: backpressure, as with any slow operator.
- Calls run on an event loop thread of their own, under the `CallPolicy`
  (rate limit, timeout per attempt, retries). Their results go back to the
  task thread, which alone emits (the router is the task thread's): in
  input order with `ordered=True`, else as they complete. The task thread
  waits for input and for finished calls at once (`InputGate`).
- A call that fails after its retries goes to `on_error`: "fail" fails the
  task with the last exception as cause, "skip" counts it and drops the
  record (for a generator: the records it yielded before failing stay).
  A call ended by a `CancelledError` the operator did not ask for fails
  the same way (a `RuntimeError`, see `async_calls.cancellation`); one
  that raised `KeyboardInterrupt` or `SystemExit` fails the task whatever
  `on_error` says. Either way its slot is finished: nothing waits for it.
- A generator's records wait to be emitted in its slot, at most the job's
  `batch_size` of them: then the generator waits until the task thread
  takes them (backpressure on what it yields, as `capacity` is on input).
- End of stream: `close()` first waits for every call in flight and emits
  its results, then closes the function: the stop signal follows the last
  result. A checkpoint does the same before its snapshot (`snapshot_state`),
  so a barrier follows the results of every record taken before it: no
  result is lost or emitted twice across a restart.
- `release()` (however the task ended) cancels calls still in flight and
  ends the event loop thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from itertools import repeat
from typing import Any

from ..async_calls.call_runner import CallRunner
from ..async_calls.call_stats import CallStats
from ..async_calls.cancellation import cancelled_by_us, unasked
from ..async_calls.completions import Completions, Slot
from ..async_calls.input_gate import InputGate
from ..async_calls.loop_thread import LoopThread
from ..communication.errors import SendCancelled
from ..communication.router import UNKEYED
from ..context import TaskContext
from ..graph import OperatorSpec
from .operators import ErrorHandler, Operator

WAIT = 0.2
"""Seconds the task thread waits for a finished call before re-checking for cancellation."""


class AsyncOperator(Operator):
    """What `map_async` and `flatmap_async` share; subclasses say how one record's call runs (`_call`)."""

    def __init__(self, spec: OperatorSpec, ctx: TaskContext, on_error: ErrorHandler) -> None:
        super().__init__(spec, ctx, on_error)
        policy = spec.call_policy
        assert policy is not None, "an async operator's spec carries its call policy"
        self.capacity = policy.capacity
        self._wakeup = threading.Condition()
        self.completions = Completions(policy.ordered, self._wakeup, ctx.config.batch_size)
        self.stats = CallStats(policy.capacity)
        self.runner = CallRunner(policy, self.stats)
        self._loop: LoopThread | None = None
        self._gate: InputGate | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the loop thread's own: running calls stay referenced

    # ------------------------------------------------------------------ lifecycle (the task thread)
    def open(self) -> None:
        self._loop = LoopThread(f"sage-loop-{self.ctx.name}", self.completions.end)
        self._run_hook("open")

    def close(self) -> None:
        self.drain()
        self._run_hook("close")

    def snapshot_state(self) -> dict[str, Any]:
        """Emit the results of every record taken so far, then the function's state: the barrier that
        follows carries no call in flight."""
        self.drain()
        return super().snapshot_state()

    def release(self) -> None:
        """Stop reading input, cancel the calls still in flight and end the event loop thread."""
        if self._gate is not None:
            self._gate.close()
        if self._loop is not None:
            self._loop.close()

    def metrics(self) -> dict[str, Any]:
        return {"async": self.stats.snapshot()}

    def holds_records(self) -> bool:
        """True while calls are in flight or results wait to be emitted (a feedback loop is not empty then)."""
        return len(self.completions) > 0

    def _run_hook(self, hook: str) -> None:
        """Call the function's `open` or `close`; when it is an async def, wait for it on the event loop."""
        result = getattr(self.function, hook)()
        if inspect.isawaitable(result):
            assert self._loop is not None, "the event loop runs from open() on"
            self._loop.run(_awaited(result, f"{type(self.function).__name__}.{hook}()"), self.ctx.cancel_event)

    # ------------------------------------------------------------------ input and emission (the task thread)
    def input_reader(self, read: Callable[[int, float], list[Any]]) -> Callable[[int, float], list[Any]]:
        """Read input through an `InputGate`, so that finished calls wake the task loop too."""
        self._gate = InputGate(read, self._wakeup, self.completions.has_news, self.ctx.name)
        return self._get_many

    def _get_many(self, size: int, timeout: float) -> list[Any]:
        self.emit_ready()
        assert self._gate is not None, "input_reader made the gate"
        return self._gate.get_many(size, timeout)

    def process_batch(self, payloads: list[Any], keys: list[Any] | None, input_index: int) -> None:
        """Start a call per record, in order; while `capacity` records are held, wait (emitting) for room."""
        calls: list[tuple[Slot, Any]] = []
        completions, capacity = self.completions, self.capacity
        for position, payload in enumerate(payloads):
            if len(completions) >= capacity:
                self._start(calls)
                calls = []
                self._wait_until(lambda: len(completions) < capacity)
            envelope = payload if self.enveloped else None
            slot = completions.open((UNKEYED if keys is None else keys[position], envelope))
            calls.append((slot, payload if envelope is None else envelope.payload))
        self._start(calls)

    def drain(self) -> None:
        """Wait for every call in flight and emit its results. Raises `SendCancelled` on cancellation."""
        self._wait_until(lambda: len(self.completions) == 0)

    def emit_ready(self) -> None:
        """Emit what finished calls produced and may go now; a failed call goes to `on_error` (which raises
        when the task fails). A call that raised `KeyboardInterrupt` or `SystemExit` raises `RuntimeError`
        here (its `__cause__`), whatever `on_error` says."""
        runs, errors = self.completions.take()
        for error in errors:
            if not isinstance(error, Exception):
                raise unasked(f"{self.ctx.name}: a call", error)
            self.on_error(error)
        if not runs:
            return
        outputs: list[Any] = []
        keys: list[Any] = []
        keyed = False
        for (key, envelope), produced in runs:
            outputs.extend(produced if envelope is None else [envelope.carrying(out) for out in produced])
            keys.extend(repeat(key, len(produced)))
            keyed = keyed or key is not UNKEYED
        self.emit(outputs, keys if keyed else None)

    def _wait_until(self, condition: Callable[[], bool]) -> None:
        wakeup, has_news, cancel, router = self._wakeup, self.completions.has_news, self.ctx.cancel_event, self.router
        while True:
            self.emit_ready()
            if condition():
                return
            if router.has_pending():
                router.flush()  # going to wait: nothing emitted may wait in a batch meanwhile (as the task loop)
            with wakeup:
                wakeup.wait_for(has_news, WAIT)
            if cancel.is_set():
                raise SendCancelled(f"{self.ctx.name}: cancelled while waiting for calls in flight")

    def _start(self, calls: list[tuple[Slot, Any]]) -> None:
        if calls:
            assert self._loop is not None, "the event loop runs from open() on"
            self._loop.call_soon(self._launch, calls)  # one hand-over per run of records, not per record

    # ------------------------------------------------------------------ calls (the event loop thread)
    def _launch(self, calls: list[tuple[Slot, Any]]) -> None:
        assert self._loop is not None
        tasks, create_task = self._tasks, self._loop.loop.create_task
        for slot, payload in calls:
            task = create_task(self._call(slot, payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _call(self, slot: Slot, payload: Any) -> None:
        """Run one record's call and finish its slot, however the call ends but by the operator's own
        cancellation (the runner turns any other `CancelledError` into an error)."""
        try:
            outputs = await self._outputs(slot, payload)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: they must not stop the event loop
            self.completions.finish(slot, error=exc)
        else:
            self.completions.finish(slot, outputs)

    async def _outputs(self, slot: Slot, payload: Any) -> list[Any] | None:
        """Make one record's call; returns its outputs not yet added to `slot` (raises what the call raised)."""
        raise NotImplementedError


class AsyncMapOperator(AsyncOperator):
    """One output per record: what the coroutine `execute(record)` returns."""

    async def _outputs(self, slot: Slot, payload: Any) -> list[Any] | None:
        execute = self.function.execute
        return [await self.runner.call(lambda: execute(payload))]


class AsyncFlatMapOperator(AsyncOperator):
    """The records the async generator `execute(record)` yields, each emitted as soon as its turn allows."""

    async def _outputs(self, slot: Slot, payload: Any) -> list[Any] | None:
        execute, add = self.function.execute, self.completions.add
        await self.runner.stream(lambda: execute(payload), lambda item: add(slot, item))
        return None


async def _awaited(awaitable: Awaitable[Any], what: str) -> Any:
    """Await an async `open()` or `close()` on the event loop; a `BaseException` it was not asked for
    (see `async_calls.cancellation`) becomes a `RuntimeError`, as the task thread waits for the result."""
    try:
        return await awaitable
    except asyncio.CancelledError as exc:
        if cancelled_by_us():
            raise
        raise unasked(what, exc) from exc
    except (KeyboardInterrupt, SystemExit) as exc:
        raise unasked(what, exc) from exc
