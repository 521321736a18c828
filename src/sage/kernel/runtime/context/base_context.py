"""What every running instance (task or service) knows, and its service calls."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..communication.queue_descriptor import BaseQueueDescriptor
from ..config import JobConfig

if TYPE_CHECKING:
    from ..service.awaitable_future import AwaitableFuture


class RuntimeContext:
    """Identity, job settings and service plumbing of one running instance.

    `service_qds` maps every service name to its request queue descriptor,
    `service_methods` to the methods it can be called with; `response_qd`
    is where answers to this instance's calls arrive.

    Picklable: only descriptors and plain data travel; the live parts (the
    cancel event, the service caller and its listener thread) are created in
    the process where the instance runs.
    """

    _LIVE: tuple[str, ...] = ("cancel_event", "_service_caller", "_caller_lock")

    def __init__(self, name: str, job_id: str, config: JobConfig, service_qds: dict[str, BaseQueueDescriptor],
                 service_methods: dict[str, frozenset[str]], response_qd: BaseQueueDescriptor) -> None:
        self.name = name
        self.job_id = job_id
        self.config = config
        self.service_qds = service_qds
        self.service_methods = service_methods
        self.response_qd = response_qd
        self._init_live()

    def _init_live(self) -> None:
        self.cancel_event = threading.Event()
        self._service_caller: Any = None
        self._caller_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LIVE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_live()

    # ------------------------------------------------------------------ services
    @property
    def service_caller(self) -> Any:
        """The caller side of services for this instance, started on first use."""
        caller = self._service_caller
        if caller is None:
            with self._caller_lock:
                caller = self._service_caller
                if caller is None:
                    from ..service.service_caller import ServiceCaller

                    caller = self._service_caller = ServiceCaller(self)
        return caller

    def call_service(self, service_name: str, *args: Any, method: str = "process",
                     timeout: float | None = None, **kwargs: Any) -> Any:
        """Call `method` of service `service_name` and wait for the result (see `ServiceCaller.call`)."""
        return self.service_caller.call(service_name, method, args, kwargs, timeout)

    def call_service_async(self, service_name: str, *args: Any, method: str = "process",
                           timeout: float | None = None, **kwargs: Any) -> AwaitableFuture[Any]:
        """Call a service without waiting; returns a `concurrent.futures.Future` that coroutines may await."""
        future: AwaitableFuture[Any] = self.service_caller.call_async(service_name, method, args, kwargs, timeout)
        return future

    def close_services(self) -> None:
        """Stop this instance's response listener (pending calls fail with `CancelledError`)."""
        caller = self._service_caller
        if caller is not None:
            caller.close()
