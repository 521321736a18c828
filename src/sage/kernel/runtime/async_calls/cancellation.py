"""What a call's end by a `BaseException` means: the operator's own cancellation, or a failure of the call.

An async operator cancels its calls only when its task ends (`release()`);
the calls' timeouts turn their own cancellation into `TimeoutError` before
it leaves them. Any other `asyncio.CancelledError` that ends a call came
from something the call awaited (a task or future that something else
cancelled): it is the call's failure, not a reason to stop. And
`KeyboardInterrupt` or `SystemExit` raised by a call must not end the event
loop (asyncio lets them through `run_forever`, which would strand every
other call): they become errors that fail the task.
"""

from __future__ import annotations

import asyncio


def cancelled_by_us() -> bool:
    """True when the running asyncio task was asked to stop (`Task.cancel()`, as the operator's release
    does): a `CancelledError` it sees now is its own, and must propagate."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def unasked(what: str, exc: BaseException) -> RuntimeError:
    """The error that stands for `exc`, a `BaseException` that ended `what` (e.g. "call of fetch") without
    the operator asking for it: a `CancelledError` from something it awaited, or `KeyboardInterrupt` /
    `SystemExit`. `exc` is its `__cause__`."""
    if isinstance(exc, asyncio.CancelledError):
        message = (f"{what} ended with asyncio.CancelledError although the operator did not cancel it "
                   f"(something else cancelled a task or future it awaited)")
    else:
        message = f"{what} raised {exc!r}, which an async call may not raise: the task fails"
    error = RuntimeError(message)
    error.__cause__ = exc
    return error
