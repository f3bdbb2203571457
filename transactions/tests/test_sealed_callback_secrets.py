"""Callback clients' secrets under the key ring (kit.sealing): values sealed under the
single key of old (TRANSACTIONS_CALLBACK_SECRETS_KEY) still open under a ring that adds
a newer key, and re-sealing moves every row under the newest key."""

import base64
import secrets
from typing import Any

import httpx
from sqlalchemy import text
from temporalio.client import Client

from contracts.secrets import SECRETS_RESEAL_PATH
from transactions.config import Settings
from transactions.tests.support import build_app, client_of, operator
from transactions.tests.test_callbacks import (
    CONFIRMATIONS,
    _confirmation,
    _in_review,
    _register,
    _signed,
)

OLD_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
NEW_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def _keyed(settings: Settings, **keys: str | None) -> Settings:
    values = settings.model_dump()
    values.update({"callback_secrets_key": None, "secrets_keys": None, **keys})
    return Settings.model_validate(values)


async def _confirmed(client: httpx.AsyncClient, registered: dict[str, Any]) -> httpx.Response:
    transfer_id = await _in_review(client)
    body = _confirmation(transfer_id)
    return await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))


async def _sealed_values(client: httpx.AsyncClient) -> list[bytes]:
    app: Any = client._transport.app  # type: ignore[attr-defined]  # the ASGI app under test
    async with app.state.database.engine.connect() as connection:
        rows = await connection.execute(text("SELECT secret_ciphertext FROM callback_clients"))
        return [bytes(value) for value in rows.scalars()]


class TestKeyRing:
    async def test_a_secret_sealed_under_the_single_key_opens_once_a_newer_key_is_added(
        self, settings: Settings, temporal: Client
    ) -> None:
        single = _keyed(settings, callback_secrets_key=OLD_KEY)
        async with client_of(build_app(single, temporal_client=temporal)) as client:
            registered = await _register(client)
        ring = _keyed(settings, secrets_keys=f"new:{NEW_KEY},old:{OLD_KEY}")
        async with client_of(build_app(ring, temporal_client=temporal)) as client:
            response = await _confirmed(client, registered)
            assert response.status_code == 200, response.text
            fresh = await _register(client)
            assert any(value.startswith(b"sbk1\x03new") for value in await _sealed_values(client))
        # The single-key setting beside the ring: its key stays in the ring as the oldest.
        both = _keyed(settings, secrets_keys=f"new:{NEW_KEY}", callback_secrets_key=OLD_KEY)
        async with client_of(build_app(both, temporal_client=temporal)) as client:
            for sender in (registered, fresh):
                response = await _confirmed(client, sender)
                assert response.status_code == 200, response.text

    async def test_resealing_leaves_every_client_under_the_newest_key(
        self, settings: Settings, temporal: Client
    ) -> None:
        single = _keyed(settings, callback_secrets_key=OLD_KEY)
        async with client_of(build_app(single, temporal_client=temporal)) as client:
            registered = [await _register(client) for _ in range(3)]
        ring = _keyed(settings, secrets_keys=f"new:{NEW_KEY},old:{OLD_KEY}")
        async with client_of(build_app(ring, temporal_client=temporal)) as client:
            first = await client.post(
                SECRETS_RESEAL_PATH, headers=operator(), json={"after": None, "limit": 2}
            )
            assert first.status_code == 200, first.text
            assert first.json()["resealed"] == 2
            assert first.json()["next_after"] is not None
            rest = await client.post(
                SECRETS_RESEAL_PATH,
                headers=operator(),
                json={"after": first.json()["next_after"], "limit": 2},
            )
            assert rest.json()["resealed"] == 1, rest.text
            assert rest.json()["next_after"] is None
            assert all(value.startswith(b"sbk1\x03new") for value in await _sealed_values(client))
        newest_only = _keyed(settings, secrets_keys=f"new:{NEW_KEY}")
        async with client_of(build_app(newest_only, temporal_client=temporal)) as client:
            for sender in registered:
                response = await _confirmed(client, sender)
                assert response.status_code == 200, response.text
