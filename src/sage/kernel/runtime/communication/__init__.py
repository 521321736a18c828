"""The runtime communication layer: queue descriptors, packets, connections, routers.

It knows nothing of tasks, graphs or jobs; the runtime builds on it.
"""

from .errors import SendCancelled, TransportError
from .queue_descriptor import BaseQueueDescriptor, BatchFull, PythonQueueDescriptor, resolve_descriptor
from .router import BaseRouter, Batch, Connection, Packet, StopSignal, stable_hash

__all__ = [
    "BaseQueueDescriptor",
    "BaseRouter",
    "Batch",
    "BatchFull",
    "Connection",
    "Packet",
    "PythonQueueDescriptor",
    "SendCancelled",
    "StopSignal",
    "TransportError",
    "resolve_descriptor",
    "stable_hash",
]
