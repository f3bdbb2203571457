"""Staff: people of the bank who sign in with a password and a TOTP code (RFC 6238), each
with one role that STAFF_ROLE_SCOPES turns into operator scopes.

The TOTP secret is sealed at rest under the accounts key ring (re-sealed under its newest
key by `sagabank secrets rotate`). A code is accepted for the step before and after the
current one too (clock drift), but only for a step newer than the last one accepted: a
code seen once is refused for the rest of its window.
"""

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import pyotp
import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.identity import repository, rules
from accounts.identity.errors import OAuthInvalidGrant, StaffExists, StaffSecretsNotConfigured
from accounts.identity.service import Issuer, SessionMaker, login_key, staff_subject
from accounts.models import AUDIT_EVENTS, StaffRow
from contracts.audit import ActorType, AuditEventCreate
from contracts.auth import STAFF_ROLE_SCOPES, Scope, StaffRole
from contracts.secrets import ResealBatch, ResealRequest
from contracts.staff import STAFF_SUBJECT_PREFIX
from kit import audit
from kit.resealing import SealedColumns, reseal_batch
from kit.sealing import KeyRing, SealedValueUnreadable, sealed_key_id

log = structlog.get_logger()

TOTP_STEP_SECONDS: Final = 30
# Steps either side of the current one a code may belong to (RFC 6238 section 5.2).
TOTP_DRIFT_STEPS: Final = 1
TOTP_ISSUER: Final = "Sagabank"
# The single answer to every failed sign-in: which check failed is never told.
SIGN_IN_REFUSED: Final = "the email, the password or the code is wrong"
SIGN_IN_UNAVAILABLE: Final = "staff sign-in is unavailable for now; try again later"
# The audit subject of a sign-in with an email no member has: this prefix and a keyed hash.
UNKNOWN_SUBJECT_PREFIX: Final = "unknown:"
_UNKNOWN_SUBJECT_HEX_LENGTH: Final = 32
# Derives the key of those hashes from the audit chain key, so that the chain's own MAC key
# is used for nothing else (decision 0035).
_UNKNOWN_EMAIL_KEY_LABEL: Final = b"sagabank staff.sign_in_failed unknown email v1"
SEALED_STAFF_SECRETS: Final = SealedColumns(id=StaffRow.id, sealed=StaffRow.totp_secret_sealed)


@dataclass(frozen=True)
class StaffMember:
    id: uuid.UUID
    email: str
    display_name: str | None
    role: StaffRole
    created_at: datetime
    disabled_at: datetime | None

    @property
    def scopes(self) -> frozenset[Scope]:
        return STAFF_ROLE_SCOPES[self.role]


@dataclass(frozen=True)
class Enrolment:
    """A new staff member and the secret their authenticator app takes (shown once)."""

    member: StaffMember
    totp_secret: str

    @property
    def otpauth_uri(self) -> str:
        return pyotp.TOTP(self.totp_secret).provisioning_uri(
            name=self.member.email, issuer_name=TOTP_ISSUER
        )


def _member(row: StaffRow) -> StaffMember:
    return StaffMember(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        role=StaffRole(row.role),
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def unknown_email_subject(email: str, *, key: bytes) -> str:
    """What the audit trail names a sign-in with an email no member has by: a keyed hash
    of the normalized email (the same email, the same subject), never the typed text."""
    derived = hmac.new(key, _UNKNOWN_EMAIL_KEY_LABEL, hashlib.sha256).digest()
    normalized = rules.normalized_email(email).encode()
    digest = hmac.new(derived, normalized, hashlib.sha256).hexdigest()
    return UNKNOWN_SUBJECT_PREFIX + digest[:_UNKNOWN_SUBJECT_HEX_LENGTH]


def totp_step(moment: datetime) -> int:
    """The RFC 6238 time step `moment` falls in."""
    return int(moment.timestamp()) // TOTP_STEP_SECONDS


def matching_step(secret: str, code: str, *, now: datetime) -> int | None:
    """The step within the drift window whose code is `code`, or None."""
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS)
    current = totp_step(now)
    found = None
    # Every candidate is compared, in constant time: the answer's timing tells nothing.
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


async def _audit(
    session: AsyncSession,
    action: str,
    *,
    actor_id: str,
    actor_type: ActorType,
    subject_id: str,
    now: datetime,
    outcome: str = "succeeded",
    after: dict[str, object] | None = None,
) -> None:
    await audit.append(
        session,
        AUDIT_EVENTS,
        AuditEventCreate(
            id=uuid.uuid4(),
            occurred_at=now,
            actor_id=actor_id,
            actor_type=actor_type,
            action=action,
            subject_type="staff",
            subject_id=subject_id,
            after=after,
            outcome=outcome,
        ),
    )


async def add_staff(
    sessions: SessionMaker,
    issuer: Issuer,
    key_ring: KeyRing,
    *,
    email: str,
    role: StaffRole,
    display_name: str | None,
    password: str,
    actor_id: str,
    now: datetime,
) -> Enrolment:
    """Create a staff member with a fresh TOTP secret; StaffExists if the email is taken."""
    email = rules.normalized_email(email)
    staff_id = uuid.uuid4()
    secret = pyotp.random_base32()
    password_hash = await issuer.hash_secret(password)
    sealed = key_ring.seal(secret.encode("ascii"), associated_data=staff_id.bytes)
    async with sessions() as session, session.begin():
        statement = (
            insert(StaffRow)
            .values(
                id=staff_id,
                email=email,
                display_name=display_name,
                role=role.value,
                password_hash=password_hash,
                totp_secret_sealed=sealed,
                totp_last_step=None,
                created_at=now,
                disabled_at=None,
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(StaffRow.id)
        )
        if (await session.execute(statement)).scalar_one_or_none() is None:
            # Disabled members keep their email: it never names someone else.
            raise StaffExists("a staff member (perhaps disabled) has this email")
        after: dict[str, object] = {"email": email, "role": role.value}
        await _audit(
            session,
            "staff.added",
            actor_id=actor_id,
            actor_type=ActorType.operator,
            subject_id=str(staff_id),
            now=now,
            after=after,
        )
    log.info("staff.added", staff_id=str(staff_id), role=role.value)
    member = StaffMember(staff_id, email, display_name, role, now, None)
    return Enrolment(member=member, totp_secret=secret)


async def disable_staff(
    sessions: SessionMaker, *, email: str, actor_id: str, now: datetime
) -> StaffMember | None:
    """Disable the staff member (already disabled: unchanged) and revoke their refresh
    tokens, so that no client renews their sign-in; None if there is none."""
    email = rules.normalized_email(email)
    async with sessions() as session, session.begin():
        statement = select(StaffRow).where(StaffRow.email == email).with_for_update()
        row = (await session.execute(statement)).scalar_one_or_none()
        if row is None:
            return None
        if row.disabled_at is None:
            row.disabled_at = now
            revoked = await repository.revoke_staff_refresh_tokens(session, row.id, now=now)
            await _audit(
                session,
                "staff.disabled",
                actor_id=actor_id,
                actor_type=ActorType.operator,
                subject_id=str(row.id),
                now=now,
                after={"refresh_tokens_revoked": revoked},
            )
            log.info("staff.disabled", staff_id=str(row.id), refresh_tokens_revoked=revoked)
        return _member(row)


async def get_member(sessions: SessionMaker, staff_id: uuid.UUID) -> StaffMember | None:
    """The staff member with this id, disabled or not; None if there is none."""
    async with sessions() as session, session.begin():
        row = await repository.get_staff(session, staff_id)
        return None if row is None else _member(row)


def staff_id_of(subject: str) -> uuid.UUID | None:
    """The member a token's subject names (`staff:<uuid>`), or None for any other."""
    if not subject.startswith(STAFF_SUBJECT_PREFIX):
        return None
    try:
        return uuid.UUID(subject.removeprefix(STAFF_SUBJECT_PREFIX))
    except ValueError:
        return None


async def list_staff(sessions: SessionMaker) -> list[StaffMember]:
    """Every staff member, disabled ones too, by email."""
    async with sessions() as session, session.begin():
        rows = await session.execute(select(StaffRow).order_by(StaffRow.email).limit(1000))
        return [_member(row) for row in rows.scalars()]


async def authenticate_staff(
    sessions: SessionMaker,
    issuer: Issuer,
    key_ring: KeyRing | None,
    *,
    email: str,
    password: str,
    totp_code: str,
    client_address: str,
    now: datetime,
) -> StaffMember:
    """The staff member whose password and unused TOTP code these are; OAuthInvalidGrant
    with one same message for any failure, TooManyRequests once failures are throttled,
    StaffSecretsNotConfigured (503) without a ring or when it no longer opens the secret."""
    if key_ring is None:
        log.error("staff.sign_in_unavailable", reason="ACCOUNTS_SECRETS_KEYS is unset")
        raise StaffSecretsNotConfigured(SIGN_IN_UNAVAILABLE)
    email = rules.normalized_email(email)
    # Counted apart from customers' sign-ins of the same email.
    throttle_keys = (login_key(f"staff:{email}", client_address),)
    await issuer.throttle.check(*throttle_keys)
    async with sessions() as session, session.begin():
        statement = select(StaffRow).where(StaffRow.email == email)
        row = (await session.execute(statement)).scalar_one_or_none()
    # Verified even for an unknown or disabled member, with no transaction open: the
    # answer takes as long whoever asks.
    verified = await issuer.verify_secret(None if row is None else row.password_hash, password)
    member = None
    if row is not None and verified and row.disabled_at is None:
        member = await _accept_code(sessions, key_ring, row.id, totp_code, now=now)
    if member is not None:
        log.info("staff.signed_in", staff_id=str(member.id))
        return member
    await issuer.throttle.failed(*throttle_keys)
    async with sessions() as session, session.begin():
        # An unknown email is whatever the caller typed: the tamper-evident trail, which
        # keeps everything for good, records a keyed hash of it instead (decision 0035).
        subject_id = (
            str(row.id)
            if row is not None
            else unknown_email_subject(email, key=audit.session_chain_key(session))
        )
        await _audit(
            session,
            "staff.sign_in_failed",
            actor_id=subject_id if row is None else staff_subject(row.id),
            actor_type=ActorType.operator,
            subject_id=subject_id,
            now=now,
            outcome="refused",
        )
    log.info("staff.sign_in_refused")
    raise OAuthInvalidGrant(SIGN_IN_REFUSED)


async def _accept_code(
    sessions: SessionMaker, key_ring: KeyRing, staff_id: uuid.UUID, code: str, *, now: datetime
) -> StaffMember | None:
    """The member if `code` is theirs and of a step newer than the last accepted (which it
    becomes), else None. The row is locked: of two sign-ins with one code, one wins."""
    async with sessions() as session, session.begin():
        statement = (
            select(StaffRow)
            .where(StaffRow.id == staff_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        row = (await session.execute(statement)).scalar_one()
        if row.disabled_at is not None:
            return None
        secret = _opened_secret(key_ring, row)
        step = matching_step(secret, code, now=now)
        if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
            return None
        await session.execute(
            update(StaffRow).where(StaffRow.id == staff_id).values(totp_last_step=step)
        )
        await _audit(
            session,
            "staff.signed_in",
            actor_id=staff_subject(row.id),
            actor_type=ActorType.operator,
            subject_id=str(row.id),
            now=now,
        )
        return _member(row)


def _opened_secret(key_ring: KeyRing, row: StaffRow) -> str:
    """The member's TOTP secret; StaffSecretsNotConfigured (503, logged) when the ring
    lacks the key that sealed it: an operator's mistake, not the caller's."""
    try:
        return key_ring.open(row.totp_secret_sealed, associated_data=row.id.bytes).decode()
    except SealedValueUnreadable:
        # Reached only after the right password: a wrong one gets the usual refusal.
        log.error(
            "staff.secret_unreadable",
            staff_id=str(row.id),
            sealed_key_id=sealed_key_id(row.totp_secret_sealed),
            ring_key_ids=[key.key_id for key in key_ring.keys],
        )
        raise StaffSecretsNotConfigured(SIGN_IN_UNAVAILABLE) from None


async def reseal_secrets(
    key_ring: KeyRing | None, session: AsyncSession, request: ResealRequest
) -> ResealBatch:
    """One batch of `sagabank secrets rotate`: staff TOTP secrets re-sealed under the
    ring's newest key (kit.resealing); StaffSecretsNotConfigured without a ring."""
    if key_ring is None:
        raise StaffSecretsNotConfigured("set ACCOUNTS_SECRETS_KEYS to re-seal staff secrets")
    return await reseal_batch(
        session,
        SEALED_STAFF_SECRETS,
        key_ring,
        service="accounts",
        after=request.after,
        limit=request.limit,
    )
