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

_servers: dict[int, dict[tuple[str, int], RPCQueueServer]] = {}  # by process id: a forked child finds none
_lock = threading.Lock()


def register(server: RPCQueueServer, hosts: set[str], port: int) -> None:
    """Make `server` findable under every host name in `hosts` with `port`."""
    with _lock:
        mine = _servers.setdefault(os.getpid(), {})
        for host in hosts:
            mine[(host, port)] = server


def unregister(server: RPCQueueServer) -> None:
    """Forget every address of `server`."""
    with _lock:
        mine = _servers.get(os.getpid(), {})
        for address in [a for a, s in mine.items() if s is server]:
            del mine[address]


def find_server(host: str, port: int) -> RPCQueueServer | None:
    """The running server of this process at (host, port), or None."""
    with _lock:
        return _servers.get(os.getpid(), {}).get((host, port))
