"""Packets, connections, channel selectors and the router that moves records downstream."""

from .connection import Connection
from .packet import UNKEYED, Batch, CheckpointBarrier, FeedbackBatch, Packet, StopSignal
from .partition_key import check_key, stable_hash
from .router import DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_TIMEOUT, BaseRouter
from .selector import STRATEGIES, ChannelSelector, make_selector

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BUFFER_TIMEOUT",
    "STRATEGIES",
    "UNKEYED",
    "BaseRouter",
    "Batch",
    "ChannelSelector",
    "CheckpointBarrier",
    "Connection",
    "FeedbackBatch",
    "Packet",
    "StopSignal",
    "check_key",
    "make_selector",
    "stable_hash",
]
