"""ServiceContext: all a running service instance knows."""

from __future__ import annotations

import threading

from ..communication.queue_descriptor import BaseQueueDescriptor
from ..config import JobConfig
from .base_context import RuntimeContext


class ServiceContext(RuntimeContext):
    """Identity and queues of one service: its request queue, its own response queue
    (for calls it makes to other services) and every service's request queue."""

    _LIVE = (*RuntimeContext._LIVE, "stop_event")

    def __init__(self, service_name: str, max_concurrency: int, job_id: str, config: JobConfig,
                 request_qd: BaseQueueDescriptor, service_qds: dict[str, BaseQueueDescriptor],
                 service_methods: dict[str, frozenset[str]], response_qd: BaseQueueDescriptor) -> None:
        self.service_name = service_name
        self.max_concurrency = max_concurrency
        self.request_qd = request_qd
        super().__init__(f"service:{service_name}", job_id, config, service_qds, service_methods, response_qd)

    def _init_live(self) -> None:
        super()._init_live()
        self.stop_event = threading.Event()
