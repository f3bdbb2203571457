"""Staff who sign in as people: roles map to operator scopes, the TOTP secret is sealed at
rest, a code is never accepted twice, and every failed sign-in looks the same."""

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from accounts.config import Settings
from accounts.identity import staff
from accounts.identity.errors import OAuthInvalidGrant, StaffExists
from accounts.identity.resources import IdentityResources
from accounts.identity.service import Issuer, SessionMaker
from accounts.models import AUDIT_EVENTS, StaffRow
from accounts.tests.helpers import Clock, accounts_app
from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    STAFF_ROLE_SCOPES,
    PrincipalKind,
    Scope,
    StaffRole,
)
from contracts.staff import STAFF_DISABLE_PATH, STAFF_PATH
from kit.db import database_of
from kit.errors import TooManyRequests
from kit.resources import resources_of
from kit.sealing import KeyRing, SealedValueUnreadable, parse_key_ring
from kit.testing import TestIssuer, app_client, assert_problem

KEY_RING = "k1:" + base64.b64encode(b"s" * 32).decode()
OTHER_KEY_RING = "k2:" + base64.b64encode(b"o" * 32).decode()
EMAIL = "Rita.Reviewer@Bank.example"
PASSWORD = "a long staff passphrase"
ADDRESS = "198.51.100.20"
FAILURES_ALLOWED = 3


@dataclass
class Desk:
    """What the staff functions take, from a running accounts app."""

    sessions: SessionMaker
    issuer: Issuer
    key_ring: KeyRing
    clock: Clock

    async def add(self, role: StaffRole = StaffRole.reviewer) -> staff.Enrolment:
        return await staff.add_staff(
            self.sessions,
            self.issuer,
            self.key_ring,
            email=EMAIL,
            role=role,
            display_name="Rita",
            password=PASSWORD,
            actor_id="operator",
            now=self.clock(),
        )

    async def sign_in(
        self, code: str, *, password: str = PASSWORD, email: str = EMAIL
    ) -> staff.StaffMember:
        return await staff.authenticate_staff(
            self.sessions,
            self.issuer,
            self.key_ring,
            email=email,
            password=password,
            totp_code=code,
            client_address=ADDRESS,
            now=self.clock(),
        )

    async def actions(self) -> list[str]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.outcome)
                .where(AUDIT_EVENTS.c.action.like("staff.%"))
                .order_by(AUDIT_EVENTS.c.sequence)
            )
            return [f"{action}:{outcome}" for action, outcome in rows.all()]

    async def actors(self, action: str) -> list[str]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(AUDIT_EVENTS.c.actor_id)
                .where(AUDIT_EVENTS.c.action == action)
                .order_by(AUDIT_EVENTS.c.sequence)
            )
            return list(rows.scalars().all())


def code_at(enrolment: staff.Enrolment, moment: datetime) -> str:
    return pyotp.TOTP(enrolment.totp_secret).at(moment)


@pytest.fixture
async def desk(settings: Settings, clock: Clock) -> AsyncIterator[Desk]:
    keyed = settings.model_copy(
        update={
            "secrets_keys": SecretStr(KEY_RING),
            "login_failure_rate": f"{FAILURES_ALLOWED}/minute",
        }
    )
    app = accounts_app(keyed, clock=clock)
    async with app_client(app):
        issuer = resources_of(app, IdentityResources).issuer
        yield Desk(database_of(app).sessions, issuer, parse_key_ring(KEY_RING), clock)


class TestRoles:
    def test_each_role_maps_to_operator_scopes_only(self) -> None:
        assert set(STAFF_ROLE_SCOPES) == set(StaffRole)
        for scopes in STAFF_ROLE_SCOPES.values():
            assert scopes <= OPERATOR_SCOPES
            assert not scopes & (CUSTOMER_SCOPES - OPERATOR_SCOPES)

    def test_reviewer_decides_reviews_and_reads_transfers(self) -> None:
        reviewer = STAFF_ROLE_SCOPES[StaffRole.reviewer]
        assert {Scope.reviews_write, Scope.transfers_read} <= reviewer
        assert Scope.accounts_admin not in reviewer

    def test_auditor_reads_audit_and_never_writes_reviews(self) -> None:
        auditor = STAFF_ROLE_SCOPES[StaffRole.auditor]
        assert {Scope.audit_read, Scope.transfers_read, Scope.accounts_read} <= auditor
        assert Scope.reviews_write not in auditor
        assert Scope.transfers_reverse not in auditor

    def test_admin_holds_the_operator_scopes(self) -> None:
        assert STAFF_ROLE_SCOPES[StaffRole.admin] == OPERATOR_SCOPES

    def test_only_admins_manage_staff(self) -> None:
        holders = {
            role for role, scopes in STAFF_ROLE_SCOPES.items() if Scope.staff_manage in scopes
        }
        assert holders == {StaffRole.admin}


class TestStaffRegister:
    async def test_added_member_is_listed_with_role_and_audited(self, desk: Desk) -> None:
        enrolment = await desk.add(StaffRole.auditor)
        assert enrolment.member.email == EMAIL.lower()
        assert enrolment.otpauth_uri.startswith("otpauth://totp/Sagabank:")
        assert f"secret={enrolment.totp_secret}" in enrolment.otpauth_uri
        [listed] = await staff.list_staff(desk.sessions)
        assert (listed.email, listed.role, listed.disabled_at) == (EMAIL.lower(), "auditor", None)
        assert listed.scopes == STAFF_ROLE_SCOPES[StaffRole.auditor]
        assert await desk.actions() == ["staff.added:succeeded"]

    async def test_an_email_taken_is_refused_and_changes_nothing(self, desk: Desk) -> None:
        await desk.add()
        with pytest.raises(StaffExists):
            await desk.add(StaffRole.admin)
        [listed] = await staff.list_staff(desk.sessions)
        assert listed.role == StaffRole.reviewer

    async def test_disable_is_audited_once(self, desk: Desk) -> None:
        await desk.add()
        first = await staff.disable_staff(
            desk.sessions, email=EMAIL, actor_id="operator", now=desk.clock()
        )
        again = await staff.disable_staff(
            desk.sessions, email=EMAIL, actor_id="operator", now=desk.clock()
        )
        assert first is not None
        assert first.disabled_at is not None
        assert again is not None
        assert again.disabled_at == first.disabled_at
        assert await desk.actions() == ["staff.added:succeeded", "staff.disabled:succeeded"]
        assert (
            await staff.disable_staff(
                desk.sessions, email="nobody@bank.example", actor_id="operator", now=desk.clock()
            )
            is None
        )


class TestSealedSecret:
    async def test_the_secret_at_rest_opens_only_with_the_key(self, desk: Desk) -> None:
        enrolment = await desk.add()
        async with desk.sessions() as session:
            row = (await session.execute(select(StaffRow))).scalar_one()
        assert enrolment.totp_secret.encode() not in row.totp_secret_sealed
        opened = desk.key_ring.open(row.totp_secret_sealed, associated_data=row.id.bytes)
        assert opened.decode() == enrolment.totp_secret
        with pytest.raises(SealedValueUnreadable):
            parse_key_ring(OTHER_KEY_RING).open(
                row.totp_secret_sealed, associated_data=row.id.bytes
            )
        # Copied onto another row, it does not open either.
        with pytest.raises(SealedValueUnreadable):
            desk.key_ring.open(row.totp_secret_sealed, associated_data=uuid.uuid4().bytes)


class TestSignIn:
    async def test_password_and_current_code_sign_in_and_are_audited(self, desk: Desk) -> None:
        enrolment = await desk.add()
        member = await desk.sign_in(code_at(enrolment, desk.clock()))
        assert member.id == enrolment.member.id
        assert member.scopes == STAFF_ROLE_SCOPES[StaffRole.reviewer]
        assert await desk.actions() == ["staff.added:succeeded", "staff.signed_in:succeeded"]
        # Named as the member's tokens name them in every other service's trail.
        assert await desk.actors("staff.signed_in") == [f"staff:{member.id}"]

    async def test_a_code_one_step_off_is_accepted(self, desk: Desk) -> None:
        enrolment = await desk.add()
        earlier = desk.clock() - timedelta(seconds=staff.TOTP_STEP_SECONDS)
        await desk.sign_in(code_at(enrolment, earlier))

    async def test_a_code_is_never_accepted_twice(self, desk: Desk) -> None:
        enrolment = await desk.add()
        code = code_at(enrolment, desk.clock())
        await desk.sign_in(code)
        with pytest.raises(OAuthInvalidGrant, match=staff.SIGN_IN_REFUSED):
            await desk.sign_in(code)
        # Nor an older code still inside the drift window.
        earlier = desk.clock() - timedelta(seconds=staff.TOTP_STEP_SECONDS)
        with pytest.raises(OAuthInvalidGrant, match=staff.SIGN_IN_REFUSED):
            await desk.sign_in(code_at(enrolment, earlier))
        # The next step's code is new, and accepted.
        desk.clock.advance(staff.TOTP_STEP_SECONDS)
        await desk.sign_in(code_at(enrolment, desk.clock()))

    async def test_of_two_sign_ins_racing_with_one_code_one_wins(self, desk: Desk) -> None:
        # The outcome only: argon2 on its threads usually orders the two anyway, so this
        # passes without the row lock too; the lock is for the interleaving it cannot force.
        enrolment = await desk.add()
        code = code_at(enrolment, desk.clock())
        outcomes = await asyncio.gather(
            desk.sign_in(code), desk.sign_in(code), return_exceptions=True
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == [
            "OAuthInvalidGrant",
            "StaffMember",
        ]

    async def test_every_failure_looks_the_same(self, desk: Desk) -> None:
        enrolment = await desk.add()
        now = desk.clock()
        far = now + timedelta(seconds=3 * staff.TOTP_STEP_SECONDS)
        failures = [
            {"code": code_at(enrolment, far)},
            {"code": "000000" if code_at(enrolment, now) != "000000" else "111111"},
            {"code": code_at(enrolment, now), "password": "not the passphrase"},
            {"code": code_at(enrolment, now), "email": "nobody@bank.example"},
        ]
        messages = set()
        for failure in failures:
            with pytest.raises(OAuthInvalidGrant) as refused:
                await desk.sign_in(**failure)
            messages.add((refused.value.status, str(refused.value)))
        assert len(messages) == 1
        assert (await desk.actions()).count("staff.sign_in_failed:refused") == len(failures)

    async def test_disabled_staff_cannot_sign_in(self, desk: Desk) -> None:
        enrolment = await desk.add()
        await staff.disable_staff(desk.sessions, email=EMAIL, actor_id="operator", now=desk.clock())
        with pytest.raises(OAuthInvalidGrant, match=staff.SIGN_IN_REFUSED):
            await desk.sign_in(code_at(enrolment, desk.clock()))

    async def test_failures_are_throttled_before_the_right_answer_is_checked(
        self, desk: Desk
    ) -> None:
        enrolment = await desk.add()
        for _ in range(FAILURES_ALLOWED):
            with pytest.raises(OAuthInvalidGrant):
                await desk.sign_in(code_at(enrolment, desk.clock()), password="wrong")
        with pytest.raises(TooManyRequests):
            await desk.sign_in(code_at(enrolment, desk.clock()))


class TestAdminEndpoint:
    """`POST /v1/admin/staff`, `POST /v1/admin/staff/disable`, `GET /v1/admin/staff`."""

    @staticmethod
    def headers(issuer: TestIssuer) -> dict[str, str]:
        return issuer.headers("operator", PrincipalKind.operator, {Scope.staff_manage})

    async def test_add_answers_the_enrolment_then_lists_and_disables(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        body = {"email": EMAIL, "role": "reviewer", "password": PASSWORD}
        added = await client.post(STAFF_PATH, json=body, headers=self.headers(issuer))
        assert added.status_code == 201, added.text
        assert added.json()["staff"]["email"] == EMAIL.lower()
        assert added.json()["otpauth_uri"].startswith("otpauth://totp/Sagabank:")
        assert PASSWORD not in added.text
        disabled = await client.post(
            STAFF_DISABLE_PATH, json={"email": EMAIL}, headers=self.headers(issuer)
        )
        assert disabled.status_code == 200, disabled.text
        listed = await client.get(STAFF_PATH, headers=self.headers(issuer))
        [member] = listed.json()["staff"]
        assert member["role"] == "reviewer"
        assert member["disabled_at"] is not None

    async def test_a_taken_email_is_a_conflict(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        body = {"email": EMAIL, "role": "reviewer", "password": PASSWORD}
        await client.post(STAFF_PATH, json=body, headers=self.headers(issuer))
        again = await client.post(
            STAFF_PATH, json={**body, "role": "admin"}, headers=self.headers(issuer)
        )
        assert_problem(again, 409, "staff-exists")
        [member] = (await client.get(STAFF_PATH, headers=self.headers(issuer))).json()["staff"]
        assert member["role"] == "reviewer"

    @pytest.mark.parametrize(
        "body",
        [
            {"email": EMAIL, "role": "reviewer", "password": "short"},
            {"email": EMAIL, "role": "superuser", "password": PASSWORD},
            {"email": "not-an-address", "role": "reviewer", "password": PASSWORD},
            {"email": EMAIL, "role": "reviewer", "password": PASSWORD, "scopes": ["x"]},
        ],
    )
    async def test_bad_input_is_refused_and_adds_nobody(
        self, client: httpx.AsyncClient, issuer: TestIssuer, body: dict[str, object]
    ) -> None:
        refused = await client.post(STAFF_PATH, json=body, headers=self.headers(issuer))
        assert_problem(refused, 422, "invalid-request")
        assert (await client.get(STAFF_PATH, headers=self.headers(issuer))).json()["staff"] == []

    async def test_disabling_nobody_is_not_found(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        answer = await client.post(
            STAFF_DISABLE_PATH, json={"email": "nobody@bank.example"}, headers=self.headers(issuer)
        )
        assert_problem(answer, 404, "staff-not-found")

    async def test_without_a_key_ring_nobody_is_enrolled(
        self, settings: Settings, clock: Clock, issuer: TestIssuer
    ) -> None:
        unkeyed = settings.model_copy(update={"secrets_keys": None})
        app = accounts_app(unkeyed, clock=clock, token_verifier=issuer.verifier)
        async with app_client(app) as client:
            body = {"email": EMAIL, "role": "reviewer", "password": PASSWORD}
            answer = await client.post(STAFF_PATH, json=body, headers=self.headers(issuer))
            assert_problem(answer, 503, "staff-secrets-not-configured")
            assert (await client.get(STAFF_PATH, headers=self.headers(issuer))).json() == {
                "staff": []
            }
