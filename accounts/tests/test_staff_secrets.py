"""Staff secrets in operation: re-sealed under the newest key of ACCOUNTS_SECRETS_KEYS
(`POST /v1/admin/secrets/reseal`, what `sagabank secrets rotate` calls), a ring that no
longer opens them answered 503 rather than 500, and a failed sign-in for an unknown email
recorded under a keyed hash of it, never the typed text."""

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from accounts.config import BootstrapClient, Settings
from accounts.identity import staff
from accounts.identity.errors import OAuthInvalidGrant, StaffSecretsNotConfigured
from accounts.identity.resources import IdentityResources
from accounts.models import AUDIT_EVENTS, StaffRow
from accounts.tests.helpers import Clock, accounts_app
from contracts.auth import OPERATOR_SCOPES, Scope
from contracts.secrets import SECRETS_RESEAL_PATH
from contracts.staff import STAFF_PATH
from kit.db import database_of
from kit.resources import resources_of
from kit.sealing import KeyRing, parse_key_ring
from kit.testing import app_client, assert_problem

OLD_KEY = "old:" + "b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZCE="
NEW_KEY = "new:" + "bmV3LW5ldy1uZXctbmV3LW5ldy1uZXctbmV3LW5ldyE="
ROTATED_RING = f"{NEW_KEY},{OLD_KEY}"
PASSWORD = "a long staff passphrase"
ADDRESS = "198.51.100.30"
ADMIN_ID, ADMIN_SECRET = "operator", "operator-secret-for-tests"
ROTATOR_ID, ROTATOR_SECRET = "rotator", "rotator-secret-for-tests"
CLIENTS = [
    BootstrapClient.model_validate(
        {
            "client_id": ADMIN_ID,
            "client_secret": ADMIN_SECRET,
            "kind": "operator",
            "scopes": sorted(OPERATOR_SCOPES),
        }
    ),
    # Least privilege: a rotation needs this one scope, and it must reach accounts.
    BootstrapClient.model_validate(
        {
            "client_id": ROTATOR_ID,
            "client_secret": ROTATOR_SECRET,
            "kind": "operator",
            "scopes": [Scope.secrets_rotate],
        }
    ),
]
MEMBERS = 3


def _issuer_settings(settings: Settings, ring: str | None) -> Settings:
    return settings.model_copy(
        update={
            "secrets_keys": None if ring is None else SecretStr(ring),
            "bootstrap_clients": CLIENTS,
        }
    )


@asynccontextmanager
async def issuer_http(
    settings: Settings, clock: Clock, ring: str | None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The issuer as it runs (verifying its own tokens), its staff sealed under `ring`."""
    app = accounts_app(_issuer_settings(settings, ring), clock=clock)
    async with app_client(app) as http:
        yield http, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def client_token(http: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await http.post(
        "/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def enrol(http: httpx.AsyncClient, count: int) -> dict[uuid.UUID, tuple[str, str]]:
    """`count` staff members added through the admin route: id -> (email, TOTP secret)."""
    token = await client_token(http, ADMIN_ID, ADMIN_SECRET)
    enrolled = {}
    for number in range(count):
        email = f"member-{number}@bank.example"
        body = {"email": email, "role": "reviewer", "password": PASSWORD}
        response = await http.post(STAFF_PATH, json=body, headers=bearer(token))
        assert response.status_code == 201, response.text
        answer = response.json()
        secret = pyotp.parse_uri(answer["otpauth_uri"]).secret
        enrolled[uuid.UUID(answer["staff"]["id"])] = (email, secret)
    return enrolled


async def sealed_rows(app: FastAPI) -> dict[uuid.UUID, bytes]:
    async with database_of(app).sessions() as session:
        rows = (await session.execute(select(StaffRow.id, StaffRow.totp_secret_sealed))).all()
    return {row_id: bytes(sealed) for row_id, sealed in rows}


async def audit_events(app: FastAPI, action: str) -> list[dict[str, Any]]:
    async with database_of(app).sessions() as session:
        rows = await session.execute(
            select(AUDIT_EVENTS)
            .where(AUDIT_EVENTS.c.action == action)
            .order_by(AUDIT_EVENTS.c.sequence)
        )
        return [dict(row) for row in rows.mappings()]


async def sign_in(
    app: FastAPI, clock: Clock, *, email: str, password: str, code: str
) -> staff.StaffMember:
    """`authenticate_staff` with the app's own issuer and ring (None when it has none)."""
    identity = resources_of(app, IdentityResources)
    return await staff.authenticate_staff(
        database_of(app).sessions,
        identity.issuer,
        identity.staff_key_ring,
        email=email,
        password=password,
        totp_code=code,
        client_address=ADDRESS,
        now=clock(),
    )


def opened(ring: KeyRing, rows: dict[uuid.UUID, bytes]) -> dict[uuid.UUID, str]:
    return {
        row_id: ring.open(sealed, associated_data=row_id.bytes).decode()
        for row_id, sealed in rows.items()
    }


class TestResealing:
    """`POST /v1/admin/secrets/reseal` on accounts: staff TOTP secrets, batch by batch."""

    async def test_every_secret_ends_under_the_newest_key_and_still_signs_in(
        self, settings: Settings, clock: Clock
    ) -> None:
        async with issuer_http(settings, clock, OLD_KEY) as (http, _app):
            enrolled = await enrol(http, MEMBERS)
        async with issuer_http(settings, clock, ROTATED_RING) as (http, app):
            # A token of `secrets:rotate` alone: the scope must address accounts too.
            headers = bearer(await client_token(http, ROTATOR_ID, ROTATOR_SECRET))
            first = await http.post(SECRETS_RESEAL_PATH, json={"limit": 2}, headers=headers)
            assert first.status_code == 200, first.text
            after = first.json()["next_after"]
            rest = await http.post(
                SECRETS_RESEAL_PATH, json={"after": after, "limit": 2}, headers=headers
            )
            again = await http.post(SECRETS_RESEAL_PATH, json={}, headers=headers)
            stored = await sealed_rows(app)
            audited = await audit_events(app, "secrets.resealed")

        assert (first.json()["service"], first.json()["key_id"]) == ("accounts", "new")
        assert first.json()["resealed"] == 2
        assert (rest.json()["resealed"], rest.json()["next_after"]) == (1, None)
        assert again.json()["resealed"] == 0, "a second run has nothing left to do"
        newest = parse_key_ring(NEW_KEY)
        assert all(newest.is_current(sealed) for sealed in stored.values())
        assert opened(newest, stored) == {
            row_id: secret for row_id, (_, secret) in enrolled.items()
        }
        assert len(audited) == 2, "each batch that re-sealed is audited once"
        async with issuer_http(settings, clock, NEW_KEY) as (http, app):
            email, secret = enrolled[min(enrolled)]
            member = await sign_in(
                app, clock, email=email, password=PASSWORD, code=pyotp.TOTP(secret).at(clock())
            )
        assert member.id == min(enrolled)

    async def test_without_a_ring_it_is_503_and_changes_nothing(
        self, settings: Settings, clock: Clock
    ) -> None:
        async with issuer_http(settings, clock, None) as (http, app):
            headers = bearer(await client_token(http, ROTATOR_ID, ROTATOR_SECRET))
            response = await http.post(SECRETS_RESEAL_PATH, json={}, headers=headers)
            audited = await audit_events(app, "secrets.resealed")
        assert_problem(response, 503, "staff-secrets-not-configured")
        assert audited == []


class TestUnreadableRing:
    async def test_the_right_password_and_code_get_503_and_a_log_line(
        self,
        settings: Settings,
        clock: Clock,
        capsys: pytest.CaptureFixture[str],
        caplog: Any,
    ) -> None:
        async with issuer_http(settings, clock, OLD_KEY) as (http, _app):
            [(email, secret)] = (await enrol(http, 1)).values()
        # The old key left the ring before a rotation re-sealed the secrets.
        async with issuer_http(settings, clock, NEW_KEY) as (http, app):
            code = pyotp.TOTP(secret).at(clock())
            with pytest.raises(StaffSecretsNotConfigured) as unavailable:
                await sign_in(app, clock, email=email, password=PASSWORD, code=code)
            # A wrong password learns nothing about the ring: the one refusal as ever.
            with pytest.raises(OAuthInvalidGrant):
                await sign_in(app, clock, email=email, password="not the passphrase", code=code)

        assert unavailable.value.status == 503
        captured = capsys.readouterr()
        logged = captured.out + captured.err + caplog.text
        assert "staff.secret_unreadable" in logged, "the operator is told why"
        assert secret not in logged

    async def test_without_a_ring_sign_in_is_503(self, settings: Settings, clock: Clock) -> None:
        async with issuer_http(settings, clock, None) as (_http, app):
            with pytest.raises(StaffSecretsNotConfigured):
                await sign_in(
                    app, clock, email="member-0@bank.example", password=PASSWORD, code="123456"
                )


class TestUnknownEmailInTheTrail:
    async def test_recorded_under_a_keyed_hash_never_the_typed_text(
        self, settings: Settings, clock: Clock
    ) -> None:
        typed = "<script>alert(1)</script>@evil.example"
        async with issuer_http(settings, clock, OLD_KEY) as (_http, app):
            for email in (typed, f"  {typed.upper()} ", "someone-else@evil.example"):
                with pytest.raises(OAuthInvalidGrant):
                    await sign_in(app, clock, email=email, password=PASSWORD, code="123456")
            events = await audit_events(app, "staff.sign_in_failed")

        subjects = [(event["actor_id"], event["subject_id"]) for event in events]
        assert len(subjects) == 3
        for actor_id, subject_id in subjects:
            assert actor_id == subject_id
            assert re.fullmatch(r"unknown:[0-9a-f]{32}", subject_id), subject_id
        assert subjects[0] == subjects[1], "one address, one subject: repeated tries line up"
        assert subjects[0] != subjects[2]
        for event in events:
            assert "evil" not in repr(event).lower()

    def test_the_hash_is_keyed(self) -> None:
        # Without the trail's key, nobody can test a guessed address against the trail.
        email = "someone@bank.example"
        assert staff.unknown_email_subject(email, key=b"k" * 32) != staff.unknown_email_subject(
            email, key=b"j" * 32
        )

    async def test_a_known_member_is_still_named_by_id(
        self, settings: Settings, clock: Clock
    ) -> None:
        async with issuer_http(settings, clock, OLD_KEY) as (http, app):
            [member_id] = await enrol(http, 1)
            with pytest.raises(OAuthInvalidGrant):
                await sign_in(
                    app, clock, email="member-0@bank.example", password="wrong", code="123456"
                )
            [event] = await audit_events(app, "staff.sign_in_failed")
        assert event["subject_id"] == str(member_id)
        # The actor as every service's trail names a member: their token's subject.
        assert event["actor_id"] == f"staff:{member_id}"
