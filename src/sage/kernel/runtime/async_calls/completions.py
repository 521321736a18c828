"""Results of calls in flight, handed from the event loop thread to the task thread in emission order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Any


class Slot:
    """One record taken by an async operator: the input it came from and what its call produced so far.

    `origin` is the operator's own (the input record's key and envelope);
    the event loop thread fills `outputs`, `error` and `done` under the
    `Completions` lock. `error` is what ended the call when it failed: an
    `Exception`, or a `KeyboardInterrupt` / `SystemExit` it raised.
    """

    __slots__ = ("origin", "outputs", "error", "done", "noted", "room")

    def __init__(self, origin: Any) -> None:
        self.origin = origin
        self.outputs: list[Any] = []
        self.error: BaseException | None = None
        self.done = False
        self.noted = False  # already in the list of slots with news
        self.room: asyncio.Future[None] | None = None  # the call waits on it until `outputs` are taken


class Completions:
    """The records an operator instance holds, from taking them to emitting their results.

    The task thread `open`s a slot per record it takes; the event loop
    thread `add`s records a call produced and `finish`es the slot (with an
    error if the call failed), and every change wakes the task thread
    through `wakeup`. `take()` hands the task thread what may be emitted
    now: with `ordered`, records in input order (the outputs of the oldest
    open slot as they come, so a stream of tokens flows, and those of later
    slots once every earlier one is finished); otherwise as they come. A
    slot counts in `len()` until it is finished and taken: that is what
    `capacity` bounds.

    A slot holds at most `bound` outputs not yet taken: `add` then hands its
    call a future to await, which `take()` resolves once it took them (a
    streaming call waits for the task thread, whose emits wait for
    downstream). So at most `capacity * bound` outputs wait here at once.
    """

    def __init__(self, ordered: bool, wakeup: threading.Condition, bound: int) -> None:
        self.ordered = ordered
        self.wakeup = wakeup
        self.bound = bound
        self._open: collections.deque[Slot] = collections.deque()  # ordered: every open slot, oldest first
        self._count = 0
        self._news: list[Slot] = []  # slots changed since the last take
        self._ended: BaseException | None = None  # what ended the event loop (see `end`)

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------ the task thread
    def open(self, origin: Any) -> Slot:
        """A new slot for a record the task thread takes."""
        slot = Slot(origin)
        with self.wakeup:
            self._count += 1
            if self.ordered:
                self._open.append(slot)
        return slot

    def has_news(self) -> bool:
        """True when `take()` has something (call with `wakeup` held, e.g. in a wait predicate)."""
        return bool(self._news) or self._ended is not None

    def take(self) -> tuple[list[tuple[Any, list[Any]]], list[BaseException]]:
        """(runs to emit now as (origin, outputs), errors of calls that failed since the last take).

        Errors are reported as soon as the call fails, whatever its turn;
        the failed slot then emits what it produced before failing, at its turn.
        Calls that waited for their outputs to be taken go on. Once the
        event loop ended (`end`), every take reports what ended it, alone.
        """
        if self._ended is not None:
            return [], [self._ended]
        runs: list[tuple[Any, list[Any]]] = []
        rooms: list[asyncio.Future[None]] = []
        with self.wakeup:
            news, self._news = self._news, []
            for slot in news:
                slot.noted = False
            errors = [slot.error for slot in news if slot.done and slot.error is not None]
            if self.ordered:
                pending = self._open
                while pending:
                    head = pending[0]
                    if head.outputs:
                        self._take_outputs(head, runs, rooms)
                    if not head.done:
                        break
                    pending.popleft()
                    self._count -= 1
            else:
                for slot in news:
                    if slot.outputs:
                        self._take_outputs(slot, runs, rooms)
                    if slot.done:
                        self._count -= 1
        for room in rooms:
            # A closed event loop raises RuntimeError: the call that waited was cancelled with it.
            with contextlib.suppress(RuntimeError):
                room.get_loop().call_soon_threadsafe(_resolve, room)
        return runs, errors

    @staticmethod
    def _take_outputs(slot: Slot, runs: list[tuple[Any, list[Any]]], rooms: list[asyncio.Future[None]]) -> None:
        runs.append((slot.origin, slot.outputs))
        slot.outputs = []
        if slot.room is not None:
            rooms.append(slot.room)
            slot.room = None

    # ------------------------------------------------------------------ the event loop thread
    def add(self, slot: Slot, output: Any) -> asyncio.Future[None] | None:
        """One more output of `slot`'s call (a streamed record).

        Returns None, or, when the slot now holds `bound` outputs not yet
        taken, a future of the running event loop that the call must await
        before it produces more (resolved by the `take()` that takes them).
        """
        with self.wakeup:
            slot.outputs.append(output)
            self._note(slot)
            if len(slot.outputs) < self.bound:
                return None
            room = slot.room = asyncio.get_running_loop().create_future()
            return room

    def finish(self, slot: Slot, outputs: list[Any] | None = None, error: BaseException | None = None) -> None:
        """`slot`'s call is over, with its last `outputs` (if any), or failed with `error`."""
        with self.wakeup:
            if outputs:
                slot.outputs.extend(outputs)
            slot.done = True
            slot.error = error
            self._note(slot)

    def end(self, error: BaseException) -> None:
        """The event loop ended with `error` (a `KeyboardInterrupt` or `SystemExit` out of a task a call
        started): no call in flight will finish, and `take()` reports `error` from now on."""
        with self.wakeup:
            self._ended = error
            self.wakeup.notify_all()

    def _note(self, slot: Slot) -> None:
        if not slot.noted:
            slot.noted = True
            self._news.append(slot)
        self.wakeup.notify_all()


def _resolve(room: asyncio.Future[None]) -> None:
    if not room.done():  # a cancelled call's future is done already
        room.set_result(None)
