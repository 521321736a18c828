"""Contexts of running instances: picklable identity, queues, routing and service calls."""

from .base_context import RuntimeContext
from .service_context import ServiceContext
from .task_context import TaskContext

__all__ = ["RuntimeContext", "ServiceContext", "TaskContext"]
