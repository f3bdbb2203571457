"""Signing secrets of callback clients: made here, shown once, kept encrypted.

HMAC verification needs the secret itself, so a one-way hash (as for passwords) cannot
work. The secret is stored sealed with AES-256-GCM (kit.sealing) under a key ring that
lives outside the database (the service's settings): a copy of the database alone cannot
forge callbacks. The client id is the associated data, so a sealed secret moved to another
row no longer opens.
"""

import base64
import secrets
import uuid
from typing import Final

from kit.sealing import KeyRing

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES: Final = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def render_secret(secret: bytes) -> str:
    """The Standard Webhooks spelling of a secret: `whsec_` + base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


class CallbackSecretBox:
    """Seals callback secrets under the newest key of the service's key ring; opens those
    sealed under any key of it (and those sealed before rings, under the single key)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def seal(self, *, client_id: uuid.UUID, secret: bytes) -> bytes:
        return self.ring.seal(secret, associated_data=client_id.bytes)

    def open(self, *, client_id: uuid.UUID, sealed: bytes) -> bytes:
        """The secret; raises kit.sealing's SealedValueUnreadable if no key of the ring
        sealed it for this client."""
        return self.ring.open(sealed, associated_data=client_id.bytes)
