"""Safra's token with record counts: a loop is declared empty exactly when it is, never earlier."""

from __future__ import annotations

from sage.kernel.runtime.loop import LoopEnd, LoopTermination, LoopToken


class Ring:
    """Instances of one loop wired by hand: `send` moves records, `rest` lets one instance rest."""

    def __init__(self, size: int) -> None:
        self.sent = [0] * size
        self.members = [LoopTermination(0, i, (lambda i=i: self.sent[i])) for i in range(size)]
        self.in_flight: list[tuple[int, int]] = []  # (target, records)
        self.ended = False

    def send(self, source: int, target: int, records: int = 1) -> None:
        self.sent[source] += records
        self.in_flight.append((target, records))

    def deliver(self, index: int = 0) -> None:
        target, records = self.in_flight.pop(index)
        self.members[target].on_records(records)

    def rest(self, position: int) -> None:
        message = self.members[position].at_rest()
        if isinstance(message, LoopToken):
            self.members[(position + 1) % len(self.members)].on_token(message)
        elif isinstance(message, LoopEnd):
            self.ended = True
            for member in self.members:
                member.on_end()

    def rest_all(self) -> None:
        for position in [*range(1, len(self.members)), 0]:
            self.rest(position)


def test_an_idle_loop_ends_after_one_clean_round() -> None:
    ring = Ring(3)
    ring.rest(0)  # the leader starts round 1
    assert not ring.ended and ring.members[1].token is not None
    ring.rest_all()
    assert ring.ended and all(member.ended for member in ring.members)


def test_a_record_in_flight_keeps_the_loop_open() -> None:
    ring = Ring(3)
    ring.send(0, 2)
    for _ in range(5):
        ring.rest(0)
        ring.rest_all()
    assert not ring.ended  # counts add up to 1 while the record travels
    ring.deliver()
    for _ in range(3):
        ring.rest(0)
        ring.rest_all()
    assert ring.ended


def test_counts_read_out_of_step_do_not_fool_the_leader() -> None:
    # The token has visited instance 1 (count 0); then 1 sends to 2, 2 receives it and sends back to 1.
    # The counts the token collects add up to zero while a record is still on its way to 1:
    # only 2's dirtiness stops the leader.
    ring = Ring(3)
    ring.rest(0)
    ring.rest(1)
    ring.send(1, 2)
    ring.deliver()
    ring.send(2, 1)
    ring.rest(2)
    token = ring.members[0].token
    assert token is not None and token.count + ring.members[0].count == 0 and token.dirty
    ring.rest(0)
    assert not ring.ended
    ring.deliver()  # the record reaches 1, which sends nothing more
    for _ in range(3):
        ring.rest_all()
    assert ring.ended


def test_a_single_instance_loop_sends_itself_the_token() -> None:
    ring = Ring(1)
    ring.send(0, 0, 5)
    ring.rest(0)
    ring.rest(0)
    assert not ring.ended
    ring.deliver()
    ring.rest(0)  # the round that saw the delivery is dirty
    assert not ring.ended
    ring.rest(0)
    ring.rest(0)
    assert ring.ended


def test_has_work_at_rest_says_when_resting_matters() -> None:
    ring = Ring(2)
    leader, other = ring.members
    assert leader.has_work_at_rest and not other.has_work_at_rest
    ring.rest(0)
    assert not leader.has_work_at_rest and other.has_work_at_rest
