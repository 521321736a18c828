"""Packets, connections and the router that moves packets downstream."""

from .connection import Connection
from .packet import Packet, StopSignal
from .partition_key import stable_hash
from .router import DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_TIMEOUT, STRATEGIES, BaseRouter

__all__ = [
    "BaseRouter",
    "Connection",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BUFFER_TIMEOUT",
    "Packet",
    "STRATEGIES",
    "StopSignal",
    "stable_hash",
]
