"""Standard Webhooks signatures, written to the spec (tests verify them with the
independent `standardwebhooks` library): `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."""

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from typing import Final

from contracts.notifications import WEBHOOK_SECRET_PREFIX

SECRET_BYTES: Final = 32
SIGNATURE_VERSION: Final = "v1"


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery: the same on every attempt, so receivers can dedupe."""
    return f"msg_{delivery_id.hex}"


def _key(secret: str) -> bytes:
    assert secret.startswith(WEBHOOK_SECRET_PREFIX), "secrets are stored with their prefix"
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    assert key, "a signing key is never empty"
    return key


def sign(secret: str, *, message_id: str, timestamp_seconds: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp_seconds}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(
    secrets_in_use: Sequence[str], *, message_id: str, timestamp_seconds: int, body: bytes
) -> str:
    """`webhook-signature`: one signature per live secret (two or more during a rotation)."""
    assert secrets_in_use, "an endpoint always has a current secret"
    return " ".join(
        sign(secret, message_id=message_id, timestamp_seconds=timestamp_seconds, body=body)
        for secret in secrets_in_use
    )
