"""A queue that fails for another reason than being full surfaces as TransportError."""

from __future__ import annotations

import socket

import pytest

from sage.kernel.runtime.communication import BaseRouter, Connection, Packet, TransportError
from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_queue_whose_server_is_gone_raises_transport_error_and_keeps_the_batch() -> None:
    gone = RPCQueueDescriptor("127.0.0.1", _unused_port(), "nobody-home", maxsize=10, authkey=b"k" * 32,
                              timeout=0.5)
    router = BaseRouter({0: {0: Connection(0, 0, "far_0", gone)}}, batch_size=100)
    router.send(Packet("a"))
    with pytest.raises(TransportError) as info:
        router.flush()
    assert "far_0" in str(info.value) and isinstance(info.value.__cause__, ConnectionError)
    assert router.has_pending()  # nothing was accepted, so nothing is forgotten
    gone.close()
