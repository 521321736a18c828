"""A queue hosted by an RPC queue server (ZeroMQ), reachable from any process or machine.

This module imports no ZeroMQ: the network code loads on first use of a
descriptor, so `import sage.kernel` stays light.
"""

from __future__ import annotations

import os
from typing import Any

from .base_queue_descriptor import BaseQueueDescriptor

DEFAULT_MAXSIZE = 10_000
"""Records a queue holds before producers block (queues are bounded by default)."""

DEFAULT_TIMEOUT = 10.0
"""Seconds within which a server that stopped answering is reported (`ConnectionError`)."""

class _Forks:
    """How many forks this process is from the one that imported this module.

    Counted in each forked child, so a descriptor tells that it was inherited
    through fork without a system call (`os.getpid()`) per put or get.
    """

    count = 0

    @classmethod
    def one_more(cls) -> None:
        cls.count += 1


os.register_at_fork(after_in_child=_Forks.one_more)


class RPCQueueDescriptor(BaseQueueDescriptor):
    """The queue `queue_id` of the `RPCQueueServer` listening at `host:port`.

    Every descriptor with the same (host, port, queue_id), in any process,
    reaches the same queue. In the process that runs that server it attaches
    to the queue object directly (no socket, no pickling); elsewhere it
    connects over TCP with one socket per thread, so threads may share it.

    The facade follows `queue.Queue`: puts block while the queue is full and
    raise `queue.Full` at their timeout (`BatchFull(accepted)` for
    `put_many`), gets block while it is empty and raise `queue.Empty`.

    Remote puts are flow-controlled, not acknowledged one by one: a put
    returns once this process's stream to the server accepts the item within
    the credit (free room) the server granted it, and `flush()` blocks until
    the server has queued everything put before. A producer process that dies
    may lose what it had not flushed; at a normal interpreter exit, and in
    `close()`, the descriptor flushes. A remote get's items stay on the server
    until this process confirms it has them, so a consumer that dies mid-get
    loses nothing (see docs/rpc_queue.md).

    A server that does not answer makes a get raise `ConnectionError` within
    `timeout` seconds, and a put or `flush()` raise it once the stream has
    waited `timeout` for an answer (a blocking call never hangs on a dead
    server); a server restarted at the same address is reached again by the
    next call.

    The shared key (`authkey`, else the `SAGE_KERNEL_AUTHKEY` environment
    variable, read on first remote use) never leaves this object:
    `to_dict()`, `to_json()` and pickles carry no key, so a descriptor
    shipped to another process uses that process's `SAGE_KERNEL_AUTHKEY`.
    A remote descriptor without a key raises `AuthKeyError` on first use.

    `close()` flushes, then closes this descriptor's sockets; the queue and
    its items stay on the server (they live until the server stops).
    """

    queue_type = "rpc_queue"

    def __init__(
        self,
        host: str,
        port: int,
        queue_id: str | None = None,
        maxsize: int = DEFAULT_MAXSIZE,
        authkey: bytes | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(queue_id, maxsize, metadata)
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port must be an int in 1..65535, got {port!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
        self.host = host
        self.port = port
        self.timeout = float(timeout)
        self._authkey = authkey
        self._instance_forks = -1  # `_Forks.count` when the queue instance was made

    @property
    def queue_instance(self) -> Any:
        """The hosted queue (local attach) or the network client, made on first access.

        A descriptor inherited through `fork` drops what its parent made: the
        parent's queue object and sockets are not the child's.
        """
        if self._queue is not None and self._instance_forks != _Forks.count:
            self.clear_cache()
        return super().queue_instance

    def _create_queue_instance(self) -> Any:
        from ..rpc.local import find_server

        self._instance_forks = _Forks.count
        server = find_server(self.host, self.port)
        if server is not None:
            return server.attach_queue(self.queue_id, self.maxsize)
        from ..rpc.auth import resolve_authkey
        from ..rpc.client import RPCQueueClient

        key = resolve_authkey(self._authkey)
        return RPCQueueClient(self.host, self.port, self.queue_id, self.maxsize, key, self.timeout)

    @property
    def is_local(self) -> bool:
        """True when this descriptor attaches to a queue of a server in this process (attaches if not yet)."""
        from ..rpc.hosted_queue import HostedQueue

        return isinstance(self.queue_instance, HostedQueue)

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        self.queue_instance.put_many(items, timeout)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        items: list[Any] = self.queue_instance.get_many(max_items, timeout)
        return items

    def flush(self, timeout: float | None = None) -> None:
        """Block until the server has queued every item this process put through this descriptor.

        Local attach needs no flush (puts are in the queue when they return).
        Raises `TimeoutError` after `timeout` seconds, `ConnectionError` when
        the server stopped answering (items not confirmed may be lost), and
        `RPCQueueError` or `ValueError` when items could not travel.
        """
        client = self._client()
        if client is not None:
            client.flush(timeout)

    def close(self) -> None:
        """Flush (within `timeout`), then close this descriptor's sockets; raises what `flush` raises.

        The sockets are closed and the cached client dropped even when the flush fails.
        """
        client = self._client()
        try:
            if client is not None:
                client.close()
        finally:
            super().close()

    def _client(self) -> Any:
        """The network client this process made, or None (local attach, not used yet, or inherited by fork)."""
        instance = self._queue
        if instance is None or self._instance_forks != _Forks.count:
            return None
        from ..rpc.client import RPCQueueClient

        return instance if isinstance(instance, RPCQueueClient) else None

    def _config(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "timeout": self.timeout}

    def _identity(self) -> tuple[Any, ...]:
        # The timeout is how this handle waits, not which queue it names.
        return (self.queue_type, self.queue_id, self.maxsize, self.host, self.port)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_authkey"] = None
        return state
