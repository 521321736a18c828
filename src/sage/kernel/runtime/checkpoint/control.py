"""The driver's reader of a job attempt's control queue: checkpoint parts on their way to the coordinator."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ..communication.queue_descriptor import BaseQueueDescriptor
from .messages import EndOfInput, FinalPart, SnapshotPart

READ_WAIT = 0.2
"""Seconds a read blocks before re-checking whether the reader was stopped."""

logger = logging.getLogger(__name__)


class ControlReader:
    """Hands every message the tasks put on `descriptor` to `on_part` / `on_final` / `on_end_of_input`,
    on a thread of its own.

    Runs until `stop()`. Any failure while it runs, of the transport or of a
    callback (the store failing to begin or commit a checkpoint), ends it and
    goes to `on_error`: checkpoints can no longer complete, and sources that
    wait for one would wait forever, so the job must fail.
    """

    def __init__(self, name: str, descriptor: BaseQueueDescriptor, on_part: Callable[[SnapshotPart], None],
                 on_final: Callable[[FinalPart], None], on_end_of_input: Callable[[EndOfInput], None],
                 on_error: Callable[[BaseException], None]) -> None:
        self.descriptor = descriptor
        self._on_part = on_part
        self._on_final = on_final
        self._on_end_of_input = on_end_of_input
        self._on_error = on_error
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sage-control-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._read()
            except Exception as exc:
                if self._stopped.is_set():  # the attempt ended meanwhile (its queue closed): nothing to report
                    return
                logger.exception("the control queue %s failed; checkpoints stop completing", self.descriptor.queue_id)
                self._on_error(exc)
                return

    def _read(self) -> None:
        """Hand over what one read of the queue returns."""
        try:
            items = self.descriptor.get_many(64, READ_WAIT)
        except queue.Empty:
            return
        for item in items:
            if isinstance(item, SnapshotPart):
                self._on_part(item)
            elif isinstance(item, FinalPart):
                self._on_final(item)
            elif isinstance(item, EndOfInput):
                self._on_end_of_input(item)
            else:
                logger.warning("the control queue %s held an unknown item %r", self.descriptor.queue_id, item)
