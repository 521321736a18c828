"""The shared key: where it comes from, and the message authentication codes made with it.

Every message on the wire ends with an HMAC-SHA256 of everything before it,
under the shared key. A receiver checks it (with `hmac.compare_digest`) before
it parses the header or unpickles a byte of the payload, so a peer that does
not hold the key gets nothing deserialized.
"""

from __future__ import annotations

import hashlib
import hmac
import os

AUTHKEY_ENV = "SAGE_KERNEL_AUTHKEY"
"""Environment variable read for the key when none is passed explicitly."""

MIN_AUTHKEY_BYTES = 16
"""Shorter keys are refused: they would be guessable."""

MAC_SIZE = hashlib.sha256().digest_size


class AuthKeyError(ValueError):
    """No usable shared key: none given, none in the environment, or too short."""


def resolve_authkey(authkey: bytes | str | None) -> bytes:
    """Return the key to use: `authkey`, or else the `SAGE_KERNEL_AUTHKEY` variable.

    A `str` is encoded as UTF-8. Raises `AuthKeyError` when there is no key
    or it is shorter than `MIN_AUTHKEY_BYTES`.
    """
    if authkey is None:
        authkey = os.environ.get(AUTHKEY_ENV)
        if not authkey:
            raise AuthKeyError(
                f"the RPC queue needs a shared key: pass authkey= or set {AUTHKEY_ENV} "
                "(for example to secrets.token_hex(32)); keys are never serialized with a descriptor"
            )
    key = authkey.encode("utf-8") if isinstance(authkey, str) else bytes(authkey)
    if len(key) < MIN_AUTHKEY_BYTES:
        raise AuthKeyError(f"the RPC queue key must be at least {MIN_AUTHKEY_BYTES} bytes, got {len(key)}")
    return key


class Signer:
    """Makes and checks the HMAC-SHA256 MACs of one key.

    The keyed HMAC state is computed once and copied per message, which
    halves the cost of a MAC on small messages. Thread-safe (no shared
    mutable state is touched after construction).
    """

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, *parts: bytes | memoryview) -> bytes:
        """The MAC of the concatenation of `parts`."""
        mac = self._keyed.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()

    def verify(self, data: bytes | memoryview, mac: bytes | memoryview) -> bool:
        """True when `mac` is the MAC of `data` (constant-time compare)."""
        return hmac.compare_digest(self.sign(data), mac)
