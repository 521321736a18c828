"""Aligner: a channel that delivered the barrier is held until every open channel did."""

from __future__ import annotations

from sage.kernel.runtime.checkpoint.alignment import Aligner


def test_the_first_barrier_holds_its_channel_until_the_others_deliver_theirs() -> None:
    aligner = Aligner()
    open_channels = {"a", "b", "c"}
    assert aligner.barrier(1, "a", open_channels) is None
    assert aligner.holds("a") and not aligner.holds("b")
    aligner.hold("a-after-1")
    assert aligner.barrier(1, "b", open_channels) is None
    aligner.hold("b-after-1")
    aligned = aligner.barrier(1, "c", open_channels)
    assert aligned is not None and aligned.checkpoint_id == 1
    assert aligned.held == ["a-after-1", "b-after-1"] and aligned.seconds >= 0
    assert aligner.aligning is None and not aligner.holds("a") and aligner.last_checkpoint == 1


def test_a_channel_that_ends_is_waited_for_no_more() -> None:
    aligner = Aligner()
    assert aligner.barrier(4, "a", {"a", "b"}) is None
    aligned = aligner.check({"a"})  # b sent its stop signal instead of barrier 4
    assert aligned is not None and aligned.checkpoint_id == 4


def test_a_single_channel_aligns_at_once_and_old_barriers_are_ignored() -> None:
    aligner = Aligner(last_checkpoint=7)
    assert aligner.barrier(7, "a", {"a"}) is None  # restored from 7: its barrier means nothing now
    assert aligner.aligning is None
    aligned = aligner.barrier(8, "a", {"a"})
    assert aligned is not None and aligned.held == []
