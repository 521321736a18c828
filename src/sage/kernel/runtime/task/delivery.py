"""Putting one control item on a queue outside the router (a checkpoint part, a loop's token)."""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..communication.errors import SendCancelled
from ..communication.queue_descriptor import BaseQueueDescriptor

PUT_RETRY = 0.1
"""Seconds between cancel checks while an item waits for room."""


def put_control(descriptor: BaseQueueDescriptor, item: Any, cancel: threading.Event, what: str) -> None:
    """Put `item` on `descriptor`, waiting for room as long as it takes: a control item is never dropped.

    Raises `SendCancelled` (saying `what` was being sent) once `cancel` is
    set; errors of the queue itself propagate.
    """
    while True:
        if cancel.is_set():
            raise SendCancelled(f"{what} cancelled")
        try:
            descriptor.put(item, timeout=PUT_RETRY)
            return
        except queue.Full:
            continue
