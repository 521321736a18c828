"""The execution graph: logical pipeline -> task instances, queues and edges."""

from .execution_graph import ExecutionGraph, OperatorSpec, ServiceNode, TaskNode
from .transformation import Transformation

__all__ = ["ExecutionGraph", "OperatorSpec", "ServiceNode", "TaskNode", "Transformation"]
