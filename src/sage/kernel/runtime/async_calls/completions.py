"""Results of calls in flight, handed from the event loop thread to the task thread in emission order."""

from __future__ import annotations

import collections
import threading
from typing import Any


class Slot:
    """One record taken by an async operator: the input it came from and what its call produced so far.

    `origin` is the operator's own (the input record's key and envelope);
    the event loop thread fills `outputs`, `error` and `done` under the
    `Completions` lock.
    """

    __slots__ = ("origin", "outputs", "error", "done", "noted")

    def __init__(self, origin: Any) -> None:
        self.origin = origin
        self.outputs: list[Any] = []
        self.error: Exception | None = None
        self.done = False
        self.noted = False  # already in the list of slots with news


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
    """

    def __init__(self, ordered: bool, wakeup: threading.Condition) -> None:
        self.ordered = ordered
        self.wakeup = wakeup
        self._open: collections.deque[Slot] = collections.deque()  # ordered: every open slot, oldest first
        self._count = 0
        self._news: list[Slot] = []  # slots changed since the last take

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
        return bool(self._news)

    def take(self) -> tuple[list[tuple[Any, list[Any]]], list[Exception]]:
        """(runs to emit now as (origin, outputs), errors of calls that failed since the last take).

        Errors are reported as soon as the call fails, whatever its turn;
        the failed slot then emits what it produced before failing, at its turn.
        """
        with self.wakeup:
            news, self._news = self._news, []
            for slot in news:
                slot.noted = False
            errors = [slot.error for slot in news if slot.done and slot.error is not None]
            runs: list[tuple[Any, list[Any]]] = []
            if self.ordered:
                pending = self._open
                while pending:
                    head = pending[0]
                    if head.outputs:
                        runs.append((head.origin, head.outputs))
                        head.outputs = []
                    if not head.done:
                        break
                    pending.popleft()
                    self._count -= 1
            else:
                for slot in news:
                    if slot.outputs:
                        runs.append((slot.origin, slot.outputs))
                        slot.outputs = []
                    if slot.done:
                        self._count -= 1
            return runs, errors

    # ------------------------------------------------------------------ the event loop thread
    def add(self, slot: Slot, output: Any) -> None:
        """One more output of `slot`'s call (a streamed record)."""
        with self.wakeup:
            slot.outputs.append(output)
            self._note(slot)

    def finish(self, slot: Slot, outputs: list[Any] | None = None, error: Exception | None = None) -> None:
        """`slot`'s call is over, with its last `outputs` (if any), or failed with `error`."""
        with self.wakeup:
            if outputs:
                slot.outputs.extend(outputs)
            slot.done = True
            slot.error = error
            self._note(slot)

    def _note(self, slot: Slot) -> None:
        if not slot.noted:
            slot.noted = True
            self._news.append(slot)
        self.wakeup.notify_all()
