"""The checkpoint store: runs, atomic commits (a process killed mid-write), pruning, listing."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from sage.kernel.runtime.checkpoint import CheckpointStore
from sage.kernel.runtime.checkpoint.store import KEEP


def test_a_committed_checkpoint_is_read_back_and_is_the_last(tmp_path: pathlib.Path) -> None:
    store = CheckpointStore(str(tmp_path))
    run = store.start_run("wc", "shape-1")
    assert store.latest_run("wc") == (run, "shape-1")
    assert store.last("wc", run) is None and store.next_id("wc", run) == 1
    store.begin("wc", run, 1, 100.0)
    assert store.last("wc", run) is None  # pending is never the last checkpoint
    size = store.commit("wc", run, 1, [("map_0", b"abc"), ("sink_0", b"de")])
    assert size == 5
    last = store.last("wc", run)
    assert last is not None and (last.checkpoint_id, last.status, last.bytes) == (1, "complete", 5)
    assert last.restorable and last.duration is not None
    assert store.load("wc", run, 1) == {"map_0": b"abc", "sink_0": b"de"}
    assert store.next_id("wc", run) == 2
    assert store.start_run("wc", "shape-2") == run + 1


def test_only_the_newest_complete_checkpoints_are_kept(tmp_path: pathlib.Path) -> None:
    store = CheckpointStore(str(tmp_path))
    run = store.start_run("wc", "s")
    for checkpoint_id in range(1, 8):
        store.begin("wc", run, checkpoint_id, float(checkpoint_id))
        store.commit("wc", run, checkpoint_id, [("t", b"x" * checkpoint_id)])
    kept = [info.checkpoint_id for info in store.list()]
    assert kept == list(range(8 - KEEP, 8))
    assert store.load("wc", run, 1) == {}  # its parts went with it


def test_final_statuses(tmp_path: pathlib.Path) -> None:
    store = CheckpointStore(str(tmp_path))
    run = store.start_run("wc", "s")
    store.begin("wc", run, 1, 0.0)
    store.commit("wc", run, 1, [("t", b"s")], status="stopped")
    assert store.last("wc", run).restorable
    store.begin("wc", run, 2, 0.0)
    store.commit("wc", run, 2, [("t", b"f")], status="finished")
    last = store.last("wc", run)
    assert last.status == "finished" and last.restorable  # resuming it completes its last commits
    with pytest.raises(ValueError, match="not 'pending'"):
        store.commit("wc", run, 3, [], status="pending")


KILLED_MID_WRITE = """
import sys, time
from sage.kernel.runtime.checkpoint import CheckpointStore

store = CheckpointStore(sys.argv[1])
run = store.latest_run("wc")[0]
store.begin("wc", run, 2, time.time())

def parts():
    yield "map_0", b"new state"
    print("inside", flush=True)   # the part is written, the transaction not committed
    sys.stdin.readline()          # held here until the test kills this process
    yield "sink_0", b"never"

store.commit("wc", run, 2, parts())
"""


def test_a_process_killed_while_writing_leaves_the_previous_checkpoint_usable(tmp_path: pathlib.Path) -> None:
    store = CheckpointStore(str(tmp_path))
    run = store.start_run("wc", "s")
    store.begin("wc", run, 1, 0.0)
    store.commit("wc", run, 1, [("map_0", b"old state"), ("sink_0", b"old sink")])
    writer = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "inside"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    reopened = CheckpointStore(str(tmp_path))
    last = reopened.last("wc", run)
    assert last is not None and last.checkpoint_id == 1
    assert reopened.load("wc", run, 1) == {"map_0": b"old state", "sink_0": b"old sink"}
    assert reopened.load("wc", run, 2) == {}
    assert [(i.checkpoint_id, i.status) for i in reopened.list()] == [(1, "complete"), (2, "pending")]


def test_a_checkpoint_never_begun_cannot_be_committed(tmp_path: pathlib.Path) -> None:
    store = CheckpointStore(str(tmp_path))
    run = store.start_run("wc", "s")
    with pytest.raises(LookupError, match=r"checkpoint 1 .* never begun"):
        store.commit("wc", run, 1, [("t", b"lost")])
    assert store.list() == [] and store.load("wc", run, 1) == {}  # its parts were rolled back with it
    store.begin("wc", run, 1, 0.0)
    assert store.commit("wc", run, 1, [("t", b"kept")]) == 4
