"""How the instances of a feedback loop find out, exactly, that the loop is empty.

Safra's token algorithm (Dijkstra, EWD 998), counting records. Every
instance of the loop counts the loop records it has put on loop and feedback
connections minus those it has received and processed, and turns *dirty*
when it processes a loop record. The instances form a ring; the one at
position 0 leads. The leader sends a token round the ring. An instance
holding the token passes it on once it is *at rest*: every external input
has ended, it has processed everything it took from its queue, its router is
flushed, and its queue is empty. It adds its count and its dirtiness to the
token and turns clean. When the token is back at the leader, at rest, the
loop is empty exactly when the token is clean, the leader is clean and the
counts add up to zero: no record is left in a queue, a batch or a function
of the loop, and none can come from outside. The leader then sends `LoopEnd`
to every instance; otherwise it starts the next round.

Why the dirtiness: the counts are read one instance after another, while
records move. A record an instance received after the token had visited its
sender makes that instance dirty, so a round that read the counts out of
step fails and the next round reads them again.

Holding the token until the queue is empty is not needed for correctness;
it keeps rounds from running while the loop is busy (a round costs one
control item per instance and completes only when every instance had
nothing to do).
"""

from __future__ import annotations

from collections.abc import Callable

from .messages import LoopEnd, LoopToken


class LoopTermination:
    """One loop instance's part (see the module docs). Not thread-safe: it belongs to the task's thread.

    `sent()` returns the loop records the instance has put so far (its
    router's `loop_sent`).
    """

    def __init__(self, loop: int, position: int, sent: Callable[[], int]) -> None:
        self.loop = loop
        self.position = position
        self._sent = sent
        self.received = 0
        self.dirty = False
        self.token: LoopToken | None = None
        self.rounds = 0
        """Rounds the leader has started."""
        self.ended = False

    @property
    def count(self) -> int:
        """Loop records sent minus loop records received: what this instance has in flight."""
        return self._sent() - self.received

    def on_records(self, records: int) -> None:
        """The task processed `records` records that came over a loop or feedback edge."""
        self.received += records
        self.dirty = True

    def on_token(self, token: LoopToken) -> None:
        """The token arrived; it waits here until the instance is at rest."""
        self.token = token

    def on_end(self) -> None:
        """The leader found the loop empty: this instance finishes."""
        self.ended = True

    @property
    def has_work_at_rest(self) -> bool:
        """True when `at_rest` would do something: the token is here, or the leader has not started."""
        return not self.ended and (self.token is not None or (self.position == 0 and self.rounds == 0))

    def at_rest(self) -> LoopToken | LoopEnd | None:
        """The instance is at rest (see the module docs): what to send now, if anything.

        A `LoopToken` goes to the next instance of the ring; a `LoopEnd` (only
        from the leader, which has then ended) to every other instance.
        """
        token = self.token
        if self.ended or (token is None and (self.position != 0 or self.rounds)):
            return None
        self.token = None
        if self.position != 0:
            assert token is not None
            passed = LoopToken(self.loop, token.round, token.count + self.count, token.dirty or self.dirty)
            self.dirty = False
            return passed
        if token is not None and not token.dirty and not self.dirty and token.count + self.count == 0:
            self.ended = True
            return LoopEnd(self.loop)
        self.rounds += 1
        self.dirty = False
        return LoopToken(self.loop, self.rounds)
