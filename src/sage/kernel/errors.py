"""Errors users of sage-kernel see."""

from __future__ import annotations


def describe_error(error: BaseException) -> str:
    """`Type: message` of a user's exception, even when its `__str__` raises (then says so)."""
    try:
        message = str(error)
    except Exception as exc:  # a broken __str__ must not replace the user's error with our own
        message = f"<message unavailable: its __str__ raised {type(exc).__name__}>"
    return f"{type(error).__name__}: {message}"


class PipelineError(ValueError):
    """A pipeline that cannot run, found when it is built or submitted (names the operator)."""


class JobFailedError(RuntimeError):
    """A job failed; the message names the task, `__cause__` is the original exception."""

    def __init__(self, message: str, task_name: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name


class JobCancelledError(RuntimeError):
    """A job was cancelled before a result it owed was complete (e.g. the records of `collect()`)."""


class ServiceCallError(RuntimeError):
    """A service raised an exception whose type cannot be rebuilt in the caller.

    Carries the remote type name, message and formatted traceback.
    """

    def __init__(self, service: str, method: str, remote_type: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"service {service!r} method {method!r} raised {remote_type}: {message}\n{remote_traceback}")
        self.service = service
        self.method = method
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback


class RemoteError(RuntimeError):
    """An exception raised in another process whose type cannot be rebuilt here.

    Carries the remote type name, message and formatted traceback.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{remote_type}: {message}\n{remote_traceback}")
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
