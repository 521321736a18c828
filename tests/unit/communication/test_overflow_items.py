"""Overflow items (records fed back around a loop, loop and checkpoint control) go into a full queue
at once, on every transport, and still count toward what the queue holds."""

from __future__ import annotations

import queue

import pytest

from sage.kernel.runtime.communication.queue_descriptor import BatchFull, PythonQueueDescriptor
from sage.kernel.runtime.communication.router import Batch, CheckpointBarrier, FeedbackBatch
from sage.kernel.runtime.loop import LoopEnd, LoopToken


def test_a_full_python_queue_takes_overflow_items_and_counts_them() -> None:
    descriptor = PythonQueueDescriptor(maxsize=2)
    descriptor.put_many([Batch([1, 2])])
    with pytest.raises(queue.Full):
        descriptor.put(Batch([3]), timeout=0)
    descriptor.put_many([FeedbackBatch([4, 5, 6]), CheckpointBarrier(1, "a"), LoopToken(0, 1), LoopEnd(0)], timeout=0)
    assert descriptor.qsize() == 2 + 3 + 3
    with pytest.raises(BatchFull) as full:
        descriptor.put_many([Batch([7])], timeout=0)  # ordinary input waits while fed-back records fill the queue
    assert full.value.accepted == 0
    taken = descriptor.get_many(10)
    assert [type(item).__name__ for item in taken] == ["Batch", "FeedbackBatch", "CheckpointBarrier", "LoopToken",
                                                      "LoopEnd"]
    assert taken[1].payloads == [4, 5, 6] and descriptor.qsize() == 0


def test_overflow_items_pickle_as_themselves() -> None:
    import pickle

    batch = pickle.loads(pickle.dumps(FeedbackBatch([1], ["k"], 1, "tail_0")))
    assert type(batch) is FeedbackBatch and (batch.payloads, batch.keys, batch.input_index, batch.source) == (
        [1], ["k"], 1, "tail_0")
    token = pickle.loads(pickle.dumps(LoopToken(2, 7, -3, True)))
    assert (token.loop, token.round, token.count, token.dirty) == (2, 7, -3, True)
    assert pickle.loads(pickle.dumps(LoopEnd(4))).loop == 4

