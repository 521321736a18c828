"""Queue descriptors: serializable handles to the queues packets travel through."""

from .base_queue_descriptor import (
    BaseQueueDescriptor,
    BatchFull,
    register_descriptor_type,
    resolve_descriptor,
)
from .python_queue_descriptor import PythonQueueDescriptor

__all__ = [
    "BaseQueueDescriptor",
    "BatchFull",
    "PythonQueueDescriptor",
    "register_descriptor_type",
    "resolve_descriptor",
]
