"""Servers running in this process, found by address, so local descriptors skip the network.

A descriptor whose (host, port) names a server registered here attaches to
that server's queue object directly: same queue, no socket, no pickling.
A forked child inherits the registry but not the servers' threads, so it
finds nothing here and goes over the network like any other process.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import RPCQueueServer

_servers: dict[tuple[str, int], "RPCQueueServer"] = {}
_owner_pid = os.getpid()
_lock = threading.Lock()


def register(server: "RPCQueueServer", hosts: set[str], port: int) -> None:
    """Make `server` findable under every host name in `hosts` with `port`."""
    with _lock:
        _forget_if_forked()
        for host in hosts:
            _servers[(host, port)] = server


def unregister(server: "RPCQueueServer") -> None:
    """Forget every address of `server`."""
    with _lock:
        for address in [a for a, s in _servers.items() if s is server]:
            del _servers[address]


def find_server(host: str, port: int) -> "RPCQueueServer | None":
    """The running server of this process at (host, port), or None."""
    with _lock:
        _forget_if_forked()
        return _servers.get((host, port))


def _forget_if_forked() -> None:
    global _owner_pid
    if os.getpid() != _owner_pid:
        _servers.clear()
        _owner_pid = os.getpid()
