"""Operators: the runtime side of each user function kind."""

from .operators import Operator, SourceOperator
from .registry import create_operator

__all__ = ["Operator", "SourceOperator", "create_operator"]
