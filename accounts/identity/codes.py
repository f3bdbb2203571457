"""Authorization codes: issued after a sign-in, redeemed once at the token endpoint with
the PKCE verifier (RFC 6749 4.1, RFC 7636).

A code is random (256 bits), kept only as its SHA-256, valid for a minute and bound to its
client, redirect URI, code challenge, subject and scopes. A code shown a second time is
refused, and the refresh family its first redemption issued is revoked (RFC 6749 10.5):
someone else holds a copy.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.identity import repository, rules, service
from accounts.identity.authorize import AuthorizationRequest
from accounts.identity.errors import OAuthInvalidGrant
from accounts.identity.rules import TokenRequest
from accounts.identity.service import Issuer, SessionMaker, staff_subject
from accounts.models import AUDIT_EVENTS, AuthorizationCodeRow
from contracts.audit import ActorType, AuditEventCreate
from contracts.auth import STAFF_ROLE_SCOPES, Scope, StaffRole, TokenResponse
from kit import audit

log = structlog.get_logger()


@dataclass(frozen=True)
class SignedIn:
    """Who signed in on the sign-in page: a customer or a staff member, never both."""

    customer_id: uuid.UUID | None = None
    staff_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        assert (self.customer_id is None) != (self.staff_id is None), "one subject"

    @property
    def actor(self) -> tuple[str, ActorType]:
        if self.staff_id is not None:
            return staff_subject(self.staff_id), ActorType.operator
        return str(self.customer_id), ActorType.customer


async def _audit(
    session: AsyncSession,
    action: str,
    code_id: uuid.UUID,
    *,
    actor: tuple[str, ActorType],
    now: datetime,
    outcome: str = "succeeded",
    after: dict[str, object] | None = None,
) -> None:
    actor_id, actor_type = actor
    event = AuditEventCreate(
        id=uuid.uuid4(),
        occurred_at=now,
        actor_id=actor_id,
        actor_type=actor_type,
        action=action,
        subject_type="authorization_code",
        subject_id=str(code_id),
        after=after,
        outcome=outcome,
    )
    await audit.append(session, AUDIT_EVENTS, event)
    log.info(action, code_id=str(code_id), outcome=outcome)


async def issue_code(
    sessions: SessionMaker,
    issuer: Issuer,
    *,
    request: AuthorizationRequest,
    signed_in: SignedIn,
    scopes: frozenset[Scope],
    now: datetime,
) -> str:
    """A new code for `signed_in`, bound to the request and `scopes`: the code itself."""
    assert scopes, "a code grants at least one scope"
    code = rules.new_authorization_code()
    row = AuthorizationCodeRow(
        id=uuid.uuid4(),
        code_hash=rules.token_hash(code),
        client_id=request.client.client_id,
        redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge,
        customer_id=signed_in.customer_id,
        staff_id=signed_in.staff_id,
        scopes=sorted(scope.value for scope in scopes),
        created_at=now,
        expires_at=now + timedelta(seconds=issuer.authorization_code_lifetime_seconds),
        redeemed_at=None,
        family_id=None,
    )
    async with sessions() as session, session.begin():
        await repository.insert_authorization_code(session, row)
        after: dict[str, object] = {"client_id": row.client_id, "scopes": row.scopes}
        await _audit(
            session,
            "authorization_code.issued",
            row.id,
            actor=signed_in.actor,
            now=now,
            after=after,
        )
    return code


def code_refusal(row: AuthorizationCodeRow, request: TokenRequest, *, now: datetime) -> str | None:
    """Why the code cannot be redeemed by this request, or None (a used code is judged
    before this, by its caller)."""
    assert request.code_verifier is not None, "the parser requires a verifier"
    if row.expires_at <= now:
        return "the code expired"
    if request.client_id != row.client_id:
        return "the code was issued to another client"
    if request.redirect_uri != row.redirect_uri:
        return "redirect_uri is not the authorization request's"
    if not rules.verifier_matches(request.code_verifier, row.code_challenge):
        return "code_verifier does not match the code_challenge"
    return None


async def authorization_code_grant(
    sessions: SessionMaker, issuer: Issuer, *, request: TokenRequest, now: datetime
) -> TokenResponse:
    """Redeem a code for an access and a refresh token; invalid_grant for an unknown,
    expired, foreign or used code (a used one also revokes what it issued)."""
    assert request.code is not None, "the parser requires a code"
    answer: TokenResponse | None = None
    refusal = "the code is unknown"
    # The block ends normally in every case, so a reuse's revocation commits although
    # the request is refused after it.
    async with sessions() as session, session.begin():
        row = await repository.lock_authorization_code(session, rules.token_hash(request.code))
        if row is not None and row.redeemed_at is not None:
            refusal = "the code was already used"
            await _revoke_reused(session, row, now=now)
        elif row is not None:
            refusal = code_refusal(row, request, now=now) or ""
            if not refusal:
                answer, refusal = await _redeem(session, issuer, row, now=now)
    if answer is None:
        log.info("token.code_refused", reason=refusal)
        raise OAuthInvalidGrant(refusal)
    return answer


async def _revoke_reused(
    session: AsyncSession, row: AuthorizationCodeRow, *, now: datetime
) -> None:
    assert row.family_id is not None, "a redeemed code names the family it issued"
    revoked = await repository.revoke_refresh_family(session, row.family_id, now=now)
    signed_in = SignedIn(customer_id=row.customer_id, staff_id=row.staff_id)
    await _audit(
        session,
        "authorization_code.reused",
        row.id,
        actor=signed_in.actor,
        now=now,
        outcome="refused",
        after={"client_id": row.client_id, "refresh_tokens_revoked": revoked},
    )


async def _redeem(
    session: AsyncSession, issuer: Issuer, row: AuthorizationCodeRow, *, now: datetime
) -> tuple[TokenResponse | None, str]:
    """The tokens the code stands for, and the code marked used; or (None, why) when its
    staff member was disabled (or their role narrowed to nothing) since the sign-in."""
    scopes = frozenset(Scope(name) for name in row.scopes)
    if row.staff_id is not None:
        member = await repository.get_staff(session, row.staff_id)
        if member is None or member.disabled_at is not None:
            return None, "the staff member is disabled"
        scopes &= STAFF_ROLE_SCOPES[StaffRole(member.role)]
        if not scopes:
            return None, "the staff member's role allows none of the code's scopes"
    family_id = uuid.uuid4()
    refresh_token = await service.new_refresh_family(
        session,
        issuer,
        customer_id=row.customer_id,
        staff_id=row.staff_id,
        client_id=row.client_id,
        scopes=scopes,
        now=now,
        family_id=family_id,
    )
    await repository.mark_authorization_code_redeemed(session, row.id, family_id=family_id, now=now)
    signed_in = SignedIn(customer_id=row.customer_id, staff_id=row.staff_id)
    after: dict[str, object] = {"client_id": row.client_id, "family_id": str(family_id)}
    await _audit(
        session, "authorization_code.redeemed", row.id, actor=signed_in.actor, now=now, after=after
    )
    subject, kind = service.token_subject(customer_id=row.customer_id, staff_id=row.staff_id)
    log.info("token.issued", grant="authorization_code", subject=subject)
    access_token = issuer.access_token(subject=subject, kind=kind, scopes=scopes)
    return service.token_response(issuer, access_token, scopes, refresh_token=refresh_token), ""
