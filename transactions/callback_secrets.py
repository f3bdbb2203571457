"""Signing secrets of callback clients: made here, shown once, kept encrypted.

HMAC verification needs the secret itself, so a one-way hash (as for passwords) cannot
work. The secret is stored sealed with AES-256-GCM under a key that lives outside the
database (the service's settings): a copy of the database alone cannot forge callbacks.
The client id is the associated data, so a sealed secret moved to another row no longer
opens.
"""

import base64
import os
import secrets
import uuid
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_KEY_BYTES: Final = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def render_secret(secret: bytes) -> str:
    """The Standard Webhooks spelling of a secret: `whsec_` + base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


class CallbackSecretBox:
    """Seals and opens callback secrets with the service's callback secrets key."""

    def __init__(self, key: bytes) -> None:
        assert len(key) == _KEY_BYTES, "an AES-256 key is 32 bytes"
        self._aead = AESGCM(key)

    def seal(self, *, client_id: uuid.UUID, secret: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret, client_id.bytes)

    def open(self, *, client_id: uuid.UUID, sealed: bytes) -> bytes:
        """The secret; raises cryptography's InvalidTag if it was not sealed for this client
        under this key."""
        return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], client_id.bytes)
