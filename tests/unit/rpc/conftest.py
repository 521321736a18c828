"""Fixtures for the RPC queue tests: a shared key in the environment, servers that stop after the test."""

from __future__ import annotations

import multiprocessing
import secrets

import pytest

from sage.kernel.runtime.communication.rpc import AUTHKEY_ENV, RPCQueueServer


@pytest.fixture
def authkey(monkeypatch) -> str:
    """A fresh key, also in SAGE_KERNEL_AUTHKEY so spawned children and unpickled descriptors find it."""
    key = secrets.token_hex(32)
    monkeypatch.setenv(AUTHKEY_ENV, key)
    return key


@pytest.fixture
def server(authkey):
    """A running server on 127.0.0.1 with a free port."""
    with RPCQueueServer(authkey=authkey) as srv:
        yield srv


@pytest.fixture
def spawn():
    """The 'spawn' multiprocessing context; every process started with it is killed after the test."""
    ctx = multiprocessing.get_context("spawn")
    started = []

    class Spawner:
        Queue = ctx.Queue
        Event = ctx.Event

        @staticmethod
        def process(target, *args):
            proc = ctx.Process(target=target, args=args, daemon=True)
            proc.start()
            started.append(proc)
            return proc

    yield Spawner
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
