"""Servers running in this process, found by address, so local descriptors skip the network.

A descriptor whose (host, port) names a server registered here attaches to
that server's queue object directly: same queue, no socket, no pickling.
A forked child inherits the registry but not the servers' threads, so it
finds nothing here and goes over the network like any other process.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from .hosted_queue import HostedQueue


class HostingServer(Protocol):
    """What a local descriptor needs of the server it attaches to (an `RPCQueueServer`)."""

    def attach_queue(self, queue_id: str, maxsize: int) -> HostedQueue: ...


_servers: dict[int, dict[tuple[str, int], Any]] = {}  # by process id: a forked child finds none
_lock = threading.Lock()


def register(server: HostingServer, hosts: set[str], port: int) -> None:
    """Make `server` findable under every host name in `hosts` with `port`."""
    with _lock:
        mine = _servers.setdefault(os.getpid(), {})
        for host in hosts:
            mine[(host, port)] = server


def unregister(server: HostingServer) -> None:
    """Forget every address of `server`."""
    with _lock:
        mine = _servers.get(os.getpid(), {})
        for address in [a for a, s in mine.items() if s is server]:
            del mine[address]


def find_server(host: str, port: int) -> HostingServer | None:
    """The running server of this process at (host, port), or None."""
    with _lock:
        server: HostingServer | None = _servers.get(os.getpid(), {}).get((host, port))
        return server
