"""The Ray transport: a queue that any actor or driver of a Ray job reaches by id.

Ray is imported lazily, on first use of a queue, so this module loads (and the
"ray_queue" type registers) without Ray.
"""

from __future__ import annotations

from typing import Any

from .base_queue_descriptor import BaseQueueDescriptor
from .python_queue_descriptor import PythonQueueDescriptor

DEFAULT_NAMESPACE = "default"


def _initialized_ray() -> Any:
    """The `ray` module, once `ray.init()` ran in this process; RuntimeError otherwise."""
    import ray  # lazily: `import sage.kernel` must not import ray

    if not ray.is_initialized():
        raise RuntimeError(
            "RayQueueDescriptor needs Ray: call ray.init() (RayEnvironment does it for you) "
            "in this process before using a Ray queue"
        )
    return ray


def _in_local_mode(ray: Any) -> bool:
    """True under Ray's local mode. Ray >= 2.55 removed it and no longer defines LOCAL_MODE."""
    worker = ray._private.worker
    local_mode = getattr(worker, "LOCAL_MODE", None)
    return local_mode is not None and worker.global_worker.mode == local_mode


class RayQueueDescriptor(BaseQueueDescriptor):
    """A bounded or unbounded queue shared by every process of a Ray job.

    The queue is an async Ray actor; a detached `RayQueueManager` actor per
    `namespace` maps queue ids to queue actors. On first use in a process the
    descriptor asks the manager for the queue actor (get-or-create), then puts
    and gets go straight to the queue actor: `put_many` and `get_many` are one
    remote call per batch, and blocked calls wait on the actor, not in a client
    loop. Semantics are those of `BaseQueueDescriptor`: `queue.Full`,
    `BatchFull(accepted)` and `queue.Empty` at the timeout; a full queue blocks
    puts (backpressure), it never drops.

    Identity is (`queue_id`, `maxsize`, `namespace`). Descriptors with the same
    `queue_id` and `namespace` reach the same queue from any driver or actor of
    the cluster; the same `queue_id` in two namespaces names two queues. Give
    each job its own namespace (RayEnvironment uses the job id) so that jobs and
    drivers never share a queue. The queue is created with the `maxsize` of the
    first descriptor that reaches it.

    It needs `ray.init()` in the process first (RuntimeError otherwise). Under
    Ray's local mode (Ray < 2.55) everything runs in one process and the queue
    is an in-process queue, as with `PythonQueueDescriptor`.

    Pickling or `to_dict()` drops the live actor handle; the copy attaches again
    by name in the process that uses it.

    - `clear_cache()` / `trim()`: this descriptor forgets its handle; the queue
      and its items stay.
    - `close()`: kills the queue actor; items still queued are dropped, and
      descriptors that still hold its handle get a `ray.exceptions.RayActorError`
      on their next call (never a silent new queue). A later first access under
      the same id creates a new, empty queue. Close a queue only when its
      consumers are done; `shutdown_ray_queues(namespace)` closes a whole job.
    """

    queue_type = "ray_queue"

    def __init__(
        self,
        maxsize: int = 0,
        queue_id: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
        super().__init__(queue_id=queue_id, maxsize=maxsize, metadata=metadata)
        self.namespace = namespace

    def _config(self) -> dict[str, Any]:
        return {"namespace": self.namespace}

    def _local_mode_descriptor(self) -> PythonQueueDescriptor:
        # Namespaced id, so local-mode queues of two namespaces stay apart too.
        return PythonQueueDescriptor(queue_id=f"ray_queue:{self.namespace}:{self.queue_id}", maxsize=self.maxsize)

    def _create_queue_instance(self) -> Any:
        ray = _initialized_ray()
        if _in_local_mode(ray):
            return self._local_mode_descriptor().queue_instance
        from .ray_queue_manager import attach_queue

        return attach_queue(self.namespace, self.queue_id, self.maxsize)

    def put_many(self, items: list[Any], timeout: float | None = None) -> None:
        self.queue_instance.put_many(items, timeout)

    def get_many(self, max_items: int, timeout: float | None = None) -> list[Any]:
        items: list[Any] = self.queue_instance.get_many(max_items, timeout)
        return items

    def close(self) -> None:
        """Kill the queue actor, dropping items still queued (see the class docstring).

        Blocks until Ray reports the actor dead (at most a few seconds). Needs
        `ray.init()`, like every other use.
        """
        ray = _initialized_ray()
        if _in_local_mode(ray):
            self._local_mode_descriptor().close()
        else:
            from .ray_queue_manager import close_queue

            close_queue(self.namespace, self.queue_id)
        super().close()


def shutdown_ray_queues(namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """Kill every queue of `namespace` and its manager actor; return the closed queue ids.

    The job cleanup: afterwards no detached actor of the namespace is left in the
    cluster. Items still queued are dropped. Blocks until Ray reports the actors
    dead (RuntimeError without `ray.init()`; TimeoutError if an actor is not
    reported dead within 10 s). Under local mode there is nothing to kill: the
    in-process queues go with the process; use `close()` to drop one earlier.
    """
    ray = _initialized_ray()
    if _in_local_mode(ray):
        return []
    from .ray_queue_manager import shutdown_namespace

    return shutdown_namespace(namespace)
