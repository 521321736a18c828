"""The RPC queue transport: named bounded queues served over ZeroMQ with a shared key.

`RPCQueueServer` hosts queues in a process; `RPCQueueDescriptor` (in
`queue_descriptor`) reaches one from anywhere. See docs/rpc_queue.md for the
wire protocol, the threat model and the failure behaviour.
"""

from .auth import AUTHKEY_ENV, AuthKeyError
from .client import RPCQueueError
from .server import RPCQueueServer

__all__ = ["AUTHKEY_ENV", "AuthKeyError", "RPCQueueError", "RPCQueueServer"]
