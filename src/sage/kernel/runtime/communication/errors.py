"""Errors of the communication layer."""


class SendCancelled(Exception):
    """A blocking send gave up because its cancel event was set.

    Raised only on cancellation (the job is being torn down); a send never
    gives up on a full queue by itself.
    """
