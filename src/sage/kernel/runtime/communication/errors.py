"""Errors of the communication layer."""


class SendCancelled(Exception):
    """A blocking send gave up because its cancel event was set.

    Raised only on cancellation (the job is being torn down); a send never
    gives up on a full queue by itself.
    """


class TransportError(Exception):
    """A queue failed to take a batch for another reason than being full
    (the peer is gone, a record cannot be serialized, ...).

    The batch stays pending in the router (what the queue already accepted
    is not); the failure belongs to the channel, not to one record, so the
    runtime fails the task instead of skipping a record. `__cause__` is the
    transport's own exception.
    """
