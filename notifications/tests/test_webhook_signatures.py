"""Signatures are made to the Standard Webhooks spec and checked by its own library."""

import base64
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from notifications import webhook_signatures

BODY = b'{"type":"transfer.completed","timestamp":"2026-01-01T00:00:00Z","data":{}}'


def headers(secrets: list[str], *, message_id: str = "msg_1", body: bytes = BODY) -> dict[str, str]:
    timestamp_seconds = int(datetime.now(UTC).timestamp())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_seconds),
        "webhook-signature": webhook_signatures.signature_header(
            secrets, message_id=message_id, timestamp_seconds=timestamp_seconds, body=body
        ),
    }


class TestSecrets:
    def test_format(self) -> None:
        secret = webhook_signatures.new_secret()
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    def test_unique(self) -> None:
        assert len({webhook_signatures.new_secret() for _ in range(100)}) == 100


class TestSignatures:
    def test_verify_with_standardwebhooks(self) -> None:
        secret = webhook_signatures.new_secret()
        assert Webhook(secret).verify(BODY, headers([secret]))["type"] == "transfer.completed"

    def test_header_shape(self) -> None:
        header = headers([webhook_signatures.new_secret()])["webhook-signature"]
        version, signature = header.split(",")
        assert version == "v1"
        assert len(base64.b64decode(signature)) == 32  # HMAC-SHA256

    def test_during_rotation_both_secrets_verify(self) -> None:
        new, old = webhook_signatures.new_secret(), webhook_signatures.new_secret()
        signed = headers([new, old])
        assert len(signed["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(BODY, signed)
        Webhook(old).verify(BODY, signed)

    def test_tampered_body_fails(self) -> None:
        secret = webhook_signatures.new_secret()
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY.replace(b"completed", b"cancelled"), headers([secret]))

    def test_other_secret_fails(self) -> None:
        with pytest.raises(WebhookVerificationError):
            Webhook(webhook_signatures.new_secret()).verify(
                BODY, headers([webhook_signatures.new_secret()])
            )

    def test_other_message_id_fails(self) -> None:
        secret = webhook_signatures.new_secret()
        signed = headers([secret], message_id="msg_1")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, {**signed, "webhook-id": "msg_2"})

    def test_webhook_id_is_stable_per_delivery(self) -> None:
        delivery_id = uuid.uuid4()
        assert webhook_signatures.webhook_id(delivery_id) == webhook_signatures.webhook_id(
            delivery_id
        )
        assert webhook_signatures.webhook_id(delivery_id).startswith("msg_")
