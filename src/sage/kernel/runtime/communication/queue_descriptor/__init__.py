"""Queue descriptors: serializable handles to the queues packets travel through."""

from .base_queue_descriptor import (
    BaseQueueDescriptor,
    BatchFull,
    WeightedItem,
    item_weight,
    register_descriptor_type,
    resolve_descriptor,
)
from .python_queue_descriptor import PythonQueueDescriptor
from .ray_queue_descriptor import RayQueueDescriptor  # imports Ray only on first queue use
from .rpc_queue_descriptor import RPCQueueDescriptor  # imports no ZeroMQ until used

__all__ = [
    "BaseQueueDescriptor",
    "BatchFull",
    "PythonQueueDescriptor",
    "RPCQueueDescriptor",
    "RayQueueDescriptor",
    "WeightedItem",
    "item_weight",
    "register_descriptor_type",
    "resolve_descriptor",
]
