"""Task instances: the worker loop shared by every backend."""

from .task import Task, TaskFailure

__all__ = ["Task", "TaskFailure"]
