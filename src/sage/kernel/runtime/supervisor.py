"""The supervisor of one job: its attempts, automatic restarts, checkpoints and resumption.

An attempt is one execution graph with fresh queues, run by one `Dispatcher`
on one backend. When an attempt fails and restarts remain
(`restart_attempts`), the supervisor cancels what is left of it, waits
`restart_delay` seconds, and starts a new attempt from the last complete
checkpoint (from the start without one): sources continue from their
snapshot positions, functions get their state back, and the records of the
failed attempt that no checkpoint holds are delivered again. After the last
restart, a failure fails the job as without restarts.

With checkpoints, the supervisor also decides where a new job starts: from
the last checkpoint of a job of the same name in `checkpoint_dir` (complete,
stopped, or finished: resuming a finished job only completes the commits a
crash may have interrupted), unless the job was submitted with
`resume=False` (a new run begins). A checkpoint of a pipeline of another
shape is refused.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import PipelineError
from .backend import create_backend
from .checkpoint import CheckpointCoordinator, CheckpointStore, RestoredCheckpoint
from .checkpoint.snapshot import pipeline_shape, shape_difference
from .collect import CollectedRecords
from .compile import compile_graph
from .dispatcher import Dispatcher
from .graph import ExecutionGraph
from .job import JobRun
from .spec import JobSpec

RESTART_WAIT = 30.0
"""Most seconds a restart waits for the instances of the failed attempt to exit."""

logger = logging.getLogger(__name__)


class JobSupervisor:
    """The control of one `JobRun` (stop, cancel, metrics, routing) across its attempts; see the module docs.

    `prepare()` builds the first attempt (raising `PipelineError` for what
    cannot run, before anything starts) and returns its graph; `start()`
    starts it.
    """

    def __init__(self, job: JobRun, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec
        self.config = spec.config
        self.attempt = 0
        self.restarts = 0
        self.coordinator: CheckpointCoordinator | None = None
        self.restored: RestoredCheckpoint | None = None
        self._store: CheckpointStore | None = None
        self._dispatcher: Dispatcher | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The dispatcher of the current attempt (None before `prepare()`)."""
        return self._dispatcher

    # ------------------------------------------------------------------ start
    def prepare(self) -> ExecutionGraph:
        """Decide where the job starts and build its first attempt; returns that attempt's graph."""
        if self.config.checkpointing:
            self._open_checkpoints()
        dispatcher = self._build()
        for driver in dispatcher.graph.driver_queues.values():
            self.job.results[driver.name] = CollectedRecords(driver.name, driver.capacity)
        self._dispatcher = dispatcher
        self.job.bind(self)
        return dispatcher.graph

    def start(self) -> None:
        """Start the first attempt's instances; returns once they are started."""
        assert self._dispatcher is not None, "prepare() first"
        self._dispatcher.submit()

    def _open_checkpoints(self) -> None:
        assert self.config.checkpoint_dir is not None
        store = self._store = CheckpointStore(self.config.checkpoint_dir)
        name, shape = self.spec.name, pipeline_shape(self.spec.transformations)
        latest = store.latest_run(name) if self.spec.resume else None
        last = store.last(name, latest[0]) if latest is not None else None
        if latest is not None and last is not None and last.restorable:
            run, stored_shape = latest
            if stored_shape != shape:
                raise PipelineError(
                    f"job {name!r}: the last checkpoint ({last.checkpoint_id}) in {self.config.checkpoint_dir} is of a "
                    f"differently shaped pipeline ({shape_difference(stored_shape, shape)}); submit(resume=False) "
                    f"starts over")
            self.restored = RestoredCheckpoint(last.checkpoint_id, store.load(name, run, last.checkpoint_id))
            first_id = store.next_id(name, run)
            if last.status == "finished":
                logger.warning("job %s finished before (checkpoint %d): resuming it only completes its last commits; "
                               "submit(resume=False) runs it again", name, last.checkpoint_id)
            else:
                logger.info("job %s resumes from checkpoint %d", name, last.checkpoint_id)
        else:
            run, first_id = store.start_run(name, shape), 1
        self.coordinator = CheckpointCoordinator(store, name, run, self.config.checkpoint_interval, first_id)

    def _build(self) -> Dispatcher:
        """One attempt: a backend, a graph with fresh queues, the queues placed, a dispatcher. An attempt
        that fails on the way releases what its backend made (actors, queues, servers) before it raises."""
        spec = self.spec
        backend = create_backend(spec)
        try:
            prefix = self.job.job_id if self.attempt == 0 else f"{self.job.job_id}.a{self.attempt}"
            graph = compile_graph(spec, self.job.job_id, backend, prefix)
            backend.prepare(graph)
            return Dispatcher(self.job, graph, backend, self.config, on_end=self._ended, attempt=self.attempt,
                              restored=self.restored, coordinator=self.coordinator)
        except BaseException:
            backend.shutdown()
            raise

    # ------------------------------------------------------------------ ends and restarts
    def _ended(self, dispatcher: Dispatcher, status: str, failed_task: str | None,
               error: BaseException | None) -> None:
        with self._lock:
            if dispatcher is not self._dispatcher:
                return
            restart = (status == "failed" and not self._cancelled.is_set()
                       and self.restarts < self.config.restart_attempts)
            if restart:
                self.restarts += 1
        if restart and self.job.restarting(True):
            logger.warning("job %s: %s failed (%r); restart %d of %d", self.job.job_id, failed_task, error,
                           self.restarts, self.config.restart_attempts)
            threading.Thread(target=self._restart, args=(dispatcher, failed_task, error),
                             name=f"sage-restart-{self.job.job_id}", daemon=True).start()
            return
        if self.coordinator is not None:
            self.coordinator.close()
        self.job.end(status, failed_task, error)

    def _restart(self, failed: Dispatcher, failed_task: str | None, error: BaseException | None) -> None:
        if self.coordinator is not None:
            self.coordinator.suspend()  # the failed attempt's late parts complete nothing
        if not failed.wait_exited(RESTART_WAIT):
            logger.warning("job %s: instances of the failed attempt still run after %.0f s; restarting anyway",
                           self.job.job_id, RESTART_WAIT)
        if self._cancelled.wait(self.config.restart_delay):
            return
        try:
            self.restored = self._last_checkpoint()
            for records in self.job.results.values():
                records.commit(self.restored.checkpoint_id if self.restored else 0)
                records.discard_uncommitted()
            with self._lock:
                self.attempt += 1
                dispatcher = self._dispatcher = self._build()
            if self._cancelled.is_set() or not self.job.restarting(False):
                # Cancelled while the attempt was built (the cancel may have reached the failed attempt only).
                dispatcher.cancel_all()
                if self.coordinator is not None:
                    self.coordinator.close()
                self.job.end("cancelled")  # no-op when cancel() ended it already
                return
            dispatcher.submit()
        except Exception as exc:  # the new attempt cannot start: the job fails with why
            logger.exception("job %s: restart %d failed", self.job.job_id, self.restarts)
            if self.coordinator is not None:
                self.coordinator.close()
            self.job.end("failed", failed_task or "restart", exc)

    def _last_checkpoint(self) -> RestoredCheckpoint | None:
        """The last complete checkpoint of this job (the one it resumed from, or a newer one)."""
        coordinator, store = self.coordinator, self._store
        if coordinator is None or store is None:
            return None
        last = store.last(coordinator.job, coordinator.run)
        if last is None or not last.restorable:
            return self.restored
        if self.restored is not None and self.restored.checkpoint_id == last.checkpoint_id:
            return self.restored
        return RestoredCheckpoint(last.checkpoint_id, store.load(coordinator.job, coordinator.run, last.checkpoint_id))

    # ------------------------------------------------------------------ control (JobControl)
    def stop(self) -> None:
        """Sources end their streams; with checkpoints the last checkpoint is "stopped" (resumable)."""
        if self.coordinator is not None:
            self.coordinator.stopping()
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.stop()

    def cancel(self) -> None:
        self._cancelled.set()
        if self.job.end("cancelled"):
            if self.coordinator is not None:
                self.coordinator.close()
            dispatcher = self._dispatcher
            if dispatcher is not None:
                dispatcher.cancel_all()

    def metrics(self) -> dict[str, Any]:
        """The current attempt's instances, and under "job" the restarts and the checkpoints."""
        dispatcher = self._dispatcher
        metrics = dispatcher.metrics() if dispatcher is not None else {}
        metrics["job"] = {
            "name": self.job.job_id, "kind": "job", "status": self.job.status, "attempt": self.attempt,
            "restarts": self.restarts,
            "checkpoints": self.coordinator.metrics() if self.coordinator is not None else None,
            "restored_from": self.restored.checkpoint_id if self.restored is not None else None,
        }
        return metrics

    def routing_info(self) -> dict[str, Any]:
        dispatcher = self._dispatcher
        return dispatcher.routing_info() if dispatcher is not None else {}
