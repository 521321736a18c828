"""Feedback loops at run time: the termination token, and how a loop's instances detect that it is empty."""

from .messages import LoopEnd, LoopToken
from .termination import LoopTermination

__all__ = ["LoopEnd", "LoopTermination", "LoopToken"]
