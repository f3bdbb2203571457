"""`sagabank secrets rotate` against the real accounts, transactions and notifications
apps (on their own PostgreSQL databases): every row ends under the newest key, the secrets
still sign (or, for staff TOTP secrets, still make the codes of the person's app), and a
rotation cut off midway completes when run again."""

import asyncio
import base64
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from accounts import main as accounts_main
from accounts.config import Settings as AccountsSettings
from accounts.tests.helpers import accounts_app, write_signing_key
from contracts.secrets import SECRETS_RESEAL_PATH
from contracts.staff import STAFF_PATH
from fraud import main as fraud_main
from fraud.config import Settings as FraudSettings
from kit.db import Database
from kit.sealing import KeyRing, parse_key_ring
from kit.settings import to_asyncpg_url
from kit.testing import TestIssuer, app_client
from kit.token_signing import SigningKey
from notifications import main as notifications_main
from notifications.config import Settings as NotificationsSettings
from notifications.tests.support import PUBLIC_ADDRESS, PUBLIC_HOST, StubResolver
from sagabank.bankclient import BankError
from sagabank.rotation import SEALING_SERVICES, Rotation, rotate_service
from transactions import main as transactions_main
from transactions.callback_secrets import render_secret
from transactions.config import Settings as TransactionsSettings

DatabaseFactory = Callable[[Path], Awaitable[str]]
ISSUER = TestIssuer()
OLD_RING = f"old:{base64.b64encode(secrets.token_bytes(32)).decode()}"
NEW_KEY = f"new:{base64.b64encode(secrets.token_bytes(32)).decode()}"
ROTATED_RING = f"{NEW_KEY},{OLD_RING}"
ROWS = 3


def _apps(urls: dict[str, str], ring: str) -> dict[str, FastAPI]:
    return {
        "notifications": notifications_main.create_app(
            NotificationsSettings.model_validate(
                {"database_url": urls["notifications"], "secrets_keys": ring, "log_json": True}
                | {"dispatcher_enabled": False}
            ),
            token_verifier=ISSUER.verifier,
            # Registration resolves the URL; nothing is ever sent to it.
            resolver=StubResolver({PUBLIC_HOST: [str(PUBLIC_ADDRESS)]}),
        ),
        "transactions": transactions_main.create_app(
            TransactionsSettings.model_validate(
                {"database_url": urls["transactions"], "secrets_keys": ring, "log_json": True}
            ),
            token_verifier=ISSUER.verifier,
        ),
    }


async def _seed(apps: dict[str, FastAPI]) -> dict[str, list[str]]:
    """ROWS webhook endpoints and ROWS callback clients; the secrets they were shown."""
    shown: dict[str, list[str]] = {"notifications": [], "transactions": []}
    async with app_client(apps["notifications"]) as client:
        for _ in range(ROWS):
            response = await client.post(
                "/v1/webhook-endpoints",
                headers=ISSUER.customer("alice"),
                json={"url": f"https://{PUBLIC_HOST}/x", "event_types": ["transfer.completed"]},
            )
            assert response.status_code == 201, response.text
            shown["notifications"].append(response.json()["secret"])
    async with app_client(apps["transactions"]) as client:
        for number in range(ROWS):
            response = await client.post(
                "/v1/admin/callback-clients",
                headers=ISSUER.operator(),
                json={"name": f"rail-{number}", "account_ids": [str(uuid.uuid4())]},
            )
            assert response.status_code == 201, response.text
            shown["transactions"].append(response.json()["secret"])
    return shown


class _CutOff(TestClient):
    """A client whose connection drops after `posts_max` requests (the operator's laptop
    closing midway)."""

    def __init__(self, app: FastAPI, posts_max: int | None) -> None:
        super().__init__(app, headers=ISSUER.operator())
        self.posts_left = posts_max

    def post(self, *args: Any, **kwargs: Any) -> httpx.Response:
        if self.posts_left is not None:
            if self.posts_left == 0:
                raise httpx.ConnectError("the connection dropped")
            self.posts_left -= 1
        response: httpx.Response = super().post(*args, **kwargs)
        return response


def _rotate(app: FastAPI, service: str, *, posts_max: int | None = None) -> Rotation:
    with _CutOff(app, posts_max) as http:
        return rotate_service(http, service, "http://testserver", batch_size=1)


_SEALED = {
    "notifications": "SELECT id, secret_sealed AS sealed FROM webhook_secrets",
    "transactions": "SELECT id, secret_ciphertext AS sealed FROM callback_clients",
    "accounts": "SELECT id, totp_secret_sealed AS sealed FROM staff",
}


async def _opened(url: str, service: str, ring: KeyRing) -> list[str]:
    """Every row's secret opened under `ring`, asserting each is under its newest key."""
    database = Database(to_asyncpg_url(url), pool_size=1)
    try:
        async with database.sessions() as session:
            rows = (await session.execute(text(_SEALED[service]))).all()
    finally:
        await database.dispose()
    opened = []
    for row_id, sealed in rows:
        assert ring.is_current(bytes(sealed)), f"{service} row {row_id} is under an older key"
        plain = ring.open(bytes(sealed), associated_data=row_id.bytes)
        opened.append(render_secret(plain) if service == "transactions" else plain.decode())
    return opened


def _signs_for(secret: str, shown: str) -> bool:
    """A message signed with the stored secret verifies with the one the customer holds."""
    # One instant for the signature and its header: two readings of the clock straddled a
    # second now and then, and the header then named a time the signature was not made for.
    signed_at = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", signed_at, "{}")
    headers = {"webhook-id": "msg_1", "webhook-signature": signature}
    headers["webhook-timestamp"] = str(int(signed_at.timestamp()))
    Webhook(shown).verify("{}", headers)
    return True


async def test_rotate_cut_off_midway_then_run_again_leaves_every_row_under_the_newest_key(
    database_factory: DatabaseFactory,
) -> None:
    urls = {
        "notifications": await database_factory(notifications_main.MIGRATIONS_PATH),
        "transactions": await database_factory(transactions_main.MIGRATIONS_PATH),
    }
    shown = await _seed(_apps(urls, OLD_RING))
    apps = _apps(urls, ROTATED_RING)

    with pytest.raises(BankError, match="cannot reach notifications"):
        await asyncio.to_thread(_rotate, apps["notifications"], "notifications", posts_max=2)
    resumed = await asyncio.to_thread(_rotate, apps["notifications"], "notifications")
    assert resumed.ok
    assert resumed.key_id == "new"
    assert resumed.resealed == ROWS - 2, "the batches before the cut stayed done"
    first = await asyncio.to_thread(_rotate, apps["transactions"], "transactions")
    assert (first.resealed, first.key_id) == (ROWS, "new")
    again = await asyncio.to_thread(_rotate, apps["transactions"], "transactions")
    assert again.resealed == 0, "a second run has nothing left to do"

    newest_only = parse_key_ring(NEW_KEY)
    for service in ("notifications", "transactions"):
        stored = await _opened(urls[service], service, newest_only)
        assert sorted(stored) == sorted(shown[service])
        for stored_secret, shown_secret in zip(sorted(stored), sorted(shown[service]), strict=True):
            assert _signs_for(stored_secret, shown_secret)


@pytest.fixture(scope="module")
def signing_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issuer's own key (unused: the test issuer's tokens are the ones checked)."""
    directory = tmp_path_factory.mktemp("rotation-keys")
    write_signing_key(directory, "primary", SigningKey.generate())
    return directory


def _accounts_app(url: str, ring: str, signing_keys_dir: Path) -> FastAPI:
    settings = AccountsSettings.model_validate(
        {"database_url": url, "secrets_keys": ring, "log_json": True}
        | {"signing_keys_dir": signing_keys_dir, "hold_sweep_enabled": False}
        | {"invariant_check_enabled": False}
    )
    return accounts_app(settings, token_verifier=ISSUER.verifier)


async def _enrol_staff(app: FastAPI) -> list[str]:
    """ROWS staff members; the TOTP secrets their authenticator apps were given."""
    given = []
    async with app_client(app) as client:
        for number in range(ROWS):
            body = {"email": f"staff-{number}@bank.example", "role": "auditor"}
            response = await client.post(
                STAFF_PATH,
                headers=ISSUER.operator(),
                json=body | {"password": "a long staff passphrase"},
            )
            assert response.status_code == 201, response.text
            given.append(pyotp.parse_uri(response.json()["otpauth_uri"]).secret)
    return given


async def test_rotate_reseals_staff_totp_secrets_and_resumes_after_a_cut(
    database_factory: DatabaseFactory, signing_keys_dir: Path
) -> None:
    url = await database_factory(accounts_main.MIGRATIONS_PATH)
    given = await _enrol_staff(_accounts_app(url, OLD_RING, signing_keys_dir))
    app = _accounts_app(url, ROTATED_RING, signing_keys_dir)

    with pytest.raises(BankError, match="cannot reach accounts"):
        await asyncio.to_thread(_rotate, app, "accounts", posts_max=1)
    resumed = await asyncio.to_thread(_rotate, app, "accounts")
    again = await asyncio.to_thread(_rotate, app, "accounts")

    assert (resumed.ok, resumed.key_id) == (True, "new")
    assert resumed.resealed == ROWS - 1, "the batch before the cut stayed done"
    assert again.resealed == 0, "a second run has nothing left to do"
    stored = await _opened(url, "accounts", parse_key_ring(NEW_KEY))
    # The same secrets, so every authenticator app keeps making valid codes.
    assert sorted(stored) == sorted(given)


def test_the_cli_rotates_every_service_that_keeps_sealed_secrets(
    signing_keys_dir: Path,
) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"  # never connected: no lifespan runs
    apps = _apps({"notifications": url, "transactions": url}, OLD_RING)
    apps["accounts"] = _accounts_app(url, OLD_RING, signing_keys_dir)
    apps["fraud"] = fraud_main.create_app(
        FraudSettings.model_validate({"database_url": url}), token_verifier=ISSUER.verifier
    )
    resealing = {
        service
        for service, app in apps.items()
        if SECRETS_RESEAL_PATH in {route.path for route in iter_route_contexts(app.routes)}
    }
    assert resealing == {"accounts", "transactions", "notifications"}
    assert set(SEALING_SERVICES) == resealing
