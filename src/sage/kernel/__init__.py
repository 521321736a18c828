"""sage-kernel: a Python dataflow runtime.

Import is light: no backend (Ray, ZeroMQ) is imported until it is used.
"""

from .runtime.communication.router.packet import StopSignal

__all__ = ["StopSignal"]
__version__ = "0.1.0"
