"""Consistent checkpoints: barriers, the coordinator, the store, and what tasks send it."""

from .coordinator import CheckpointCoordinator, CompletedCheckpoint
from .store import CheckpointInfo, CheckpointStore, RestoredCheckpoint

__all__ = ["CheckpointCoordinator", "CheckpointInfo", "CheckpointStore", "CompletedCheckpoint", "RestoredCheckpoint"]
