"""TaskContext: all a running task instance knows."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..communication.queue_descriptor import BaseQueueDescriptor
from ..communication.router import BaseRouter, Connection, Packet, StopSignal
from ..config import JobConfig
from .base_context import RuntimeContext

if TYPE_CHECKING:
    from ..graph.loops import LoopRole


class TaskContext(RuntimeContext):
    """Identity, queues and routing of one task instance.

    `input_qd` is the task's input queue (None for sources),
    `downstream_groups` its outgoing connections
    (`{broadcast_index: {parallel_index: Connection}}`) and `group_strategies`
    how records are routed to each group, `upstream_names`
    the instances it expects a stop signal from. The router and the
    stop/cancel events exist only where the task runs.

    Checkpoints: `control_qd` is the job's control queue (None when the job
    takes no checkpoints), `restored_state` the task's state in the checkpoint
    the job restarts from (and `restored_checkpoint` that checkpoint's id).
    While the function's `get_state()` runs for a checkpoint, `checkpoint_id`
    is that checkpoint's id (a transactional sink tags what it stages with it).

    `loop` is the task's part in a feedback loop (None outside loops).
    """

    _LIVE = (*RuntimeContext._LIVE, "router", "stop_event")

    def __init__(self, name: str, basename: str, kind: str, parallel_index: int, parallelism: int, job_id: str,
                 config: JobConfig, input_qd: BaseQueueDescriptor | None,
                 downstream_groups: dict[int, dict[int, Connection]], upstream_names: list[str],
                 service_qds: dict[str, BaseQueueDescriptor], service_methods: dict[str, frozenset[str]],
                 response_qd: BaseQueueDescriptor, group_strategies: dict[int, str] | None = None,
                 control_qd: BaseQueueDescriptor | None = None, restored_state: bytes | None = None,
                 restored_checkpoint: int | None = None, loop: LoopRole | None = None) -> None:
        self.basename = basename
        self.kind = kind
        self.parallel_index = parallel_index
        self.parallelism = parallelism
        self.input_qd = input_qd
        self.downstream_groups = downstream_groups
        self.group_strategies = dict(group_strategies or {})
        self.upstream_names = list(upstream_names)
        self.control_qd = control_qd
        self.restored_state = restored_state
        self.restored_checkpoint = restored_checkpoint
        self.checkpoint_id: int | None = None
        self.loop = loop
        super().__init__(name, job_id, config, service_qds, service_methods, response_qd)

    def _init_live(self) -> None:
        super()._init_live()
        self.stop_event = threading.Event()
        self.router = BaseRouter(self.downstream_groups, self.group_strategies, batch_size=self.config.batch_size,
                                 buffer_timeout=self.config.buffer_timeout, cancel_event=self.cancel_event,
                                 source=self.name, copy_on_fanout=self.config.copy_on_fanout)

    def send_packet(self, packet: Packet) -> int:
        """Route one packet downstream (blocks while a target queue is full); returns deliveries."""
        return self.router.send(packet)

    def send_stop_signal(self, signal: StopSignal | None = None) -> int:
        """Flush and send one stop signal from this task to every downstream connection."""
        return self.router.send_stop_signal(signal or StopSignal("Stop", source=self.name))

    def get_routing_info(self) -> dict[str, Any]:
        """This task's routing: per broadcast group its strategy, connections, target names and queue ids."""
        groups = self.router.get_connections_info()
        return {
            "name": self.name,
            "operator": self.basename,
            "parallel_index": self.parallel_index,
            "input_queue_id": self.input_qd.queue_id if self.input_qd is not None else None,
            "upstream_names": list(self.upstream_names),
            "groups": groups,
        }
