"""Use cases of the token issuer: registration, the three grants, startup bootstrap.

The grants run their own transactions (`sessions` is the service's session maker) rather
than the request's unit of work: a reused refresh token must revoke its family for good
even though the request that showed it fails.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.config import BootstrapClient
from accounts.identity import repository, rules
from accounts.identity.errors import (
    CustomerExists,
    OAuthInvalidClient,
    OAuthInvalidGrant,
    OAuthUnsupportedGrantType,
)
from accounts.identity.hashing import PasswordHashing
from accounts.identity.keys import SigningKeys
from accounts.identity.rules import Customer, CustomerCreate, GrantType, TokenRequest
from accounts.identity.throttle import LoginThrottle
from accounts.models import (
    AUDIT_EVENTS,
    AUDIT_ID_NAMESPACE,
    ClientRow,
    CustomerRow,
    RefreshTokenRow,
)
from contracts.audit import ActorType, AuditEventCreate
from contracts.auth import (
    STAFF_ROLE_SCOPES,
    PrincipalKind,
    Scope,
    StaffRole,
    TokenResponse,
    audiences_of,
)
from contracts.staff import STAFF_SUBJECT_PREFIX
from kit import audit
from kit.token_signing import mint_token

log = structlog.get_logger()

SYSTEM_ACTOR: Final = "accounts"
SessionMaker = async_sessionmaker[AsyncSession]


@dataclass
class Issuer:
    """What the token endpoint needs, built once at startup."""

    keys: SigningKeys
    issuer: str
    access_token_lifetime_seconds: int
    refresh_token_lifetime_seconds: int
    throttle: LoginThrottle
    hasher: PasswordHasher
    # Every argon2 call goes through it: a hash costs 64 MiB, the budget caps how many run.
    hashing: PasswordHashing
    # Off where a deployment says so (ACCOUNTS_PASSWORD_GRANT_ENABLED, RFC 9700 2.4).
    password_grant_enabled: bool = True
    # How long an authorization code waits for its exchange (accounts.identity.codes).
    authorization_code_lifetime_seconds: int = 60
    # Made on first need, not at startup: hashing costs a tenth of a second.
    _dummy_hash: str | None = field(default=None, init=False, repr=False)

    async def verify_secret(self, stored_hash: str | None, secret: str) -> bool:
        """Argon2 verification within the hashing budget (PasswordHashingBusy beyond it).
        Without a stored hash it verifies against a dummy one, so an unknown user costs as
        long as a wrong password."""
        if stored_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash_secret(uuid.uuid4().hex)
            stored_hash = self._dummy_hash
        try:
            return await self.hashing.run(self.hasher.verify, stored_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    async def hash_secret(self, secret: str) -> str:
        """An argon2 hash within the hashing budget (PasswordHashingBusy beyond it)."""
        return await self.hashing.run(self.hasher.hash, secret)

    def serves(self, grant_type: GrantType) -> bool:
        """Whether the token endpoint takes this grant (and the metadata advertises it)."""
        return grant_type is not GrantType.password or self.password_grant_enabled

    def access_token(self, *, subject: str, kind: PrincipalKind, scopes: frozenset[Scope]) -> str:
        # Stamped with the real time, not the service's ledger clock: other services judge
        # `exp` by theirs. Addressed to the services the scopes are for, and no other: each
        # service accepts only tokens naming its own audience.
        return mint_token(
            self.keys.active,
            subject=subject,
            kind=kind,
            scopes={scope.value for scope in scopes},
            issuer=self.issuer,
            audience=audiences_of(scopes),
            lifetime_seconds=self.access_token_lifetime_seconds,
        )


# --- Registration -------------------------------------------------------------------------


async def register_customer(
    session: AsyncSession,
    issuer: Issuer,
    *,
    request: CustomerCreate,
    request_id: str | None,
    now: datetime,
) -> Customer:
    customer_id = uuid.uuid4()
    password_hash = await issuer.hash_secret(request.password)
    inserted = await repository.insert_customer(
        session,
        customer_id=customer_id,
        email=request.email,
        display_name=request.display_name,
        password_hash=password_hash,
        created_at=now,
    )
    if not inserted:
        raise CustomerExists("sign in, or register with another email")
    await audit.append(
        session,
        AUDIT_EVENTS,
        AuditEventCreate(
            id=uuid.uuid4(),
            occurred_at=now,
            actor_id=str(customer_id),
            actor_type=ActorType.customer,
            action="customer.registered",
            subject_type="customer",
            subject_id=str(customer_id),
            request_id=request_id,
            after={"email": request.email, "display_name": request.display_name},
            outcome="succeeded",
        ),
    )
    log.info("customer.registered", customer_id=str(customer_id))
    return Customer(
        id=customer_id, email=request.email, display_name=request.display_name, created_at=now
    )


# --- Grants -------------------------------------------------------------------------------


def refuse_unserved_grant(issuer: Issuer, grant_type: GrantType) -> None:
    """unsupported_grant_type (RFC 6749 5.2) for a grant this issuer is set not to serve,
    before any credential is looked at."""
    if issuer.serves(grant_type):
        return
    log.info("token.grant_refused", grant=grant_type.value, reason="disabled")
    raise OAuthUnsupportedGrantType(f"this issuer does not serve the {grant_type.value} grant")


def login_key(username: str, client_address: str) -> str:
    """What password logins are counted by: the name from this address, never either
    alone (one address must not lock out every name, nor one name every address)."""
    return f"user:{username}|address:{client_address}"


async def authenticate_customer(
    sessions: SessionMaker, issuer: Issuer, *, email: str, password: str, client_address: str
) -> CustomerRow:
    """The customer whose password this is; OAuthInvalidGrant for any failure (one
    message), TooManyRequests once this name's failures from this address are throttled."""
    username = rules.normalized_email(email)
    throttle_keys = (login_key(username, client_address),)
    await issuer.throttle.check(*throttle_keys)
    async with sessions() as session, session.begin():
        customer = await repository.customer_by_email(session, username)
    # Verified with no transaction open: argon2 takes a while, a connection is precious.
    stored_hash = None if customer is None else customer.password_hash
    verified = await issuer.verify_secret(stored_hash, password)
    if customer is None or not verified:
        await issuer.throttle.failed(*throttle_keys)
        log.info("token.password_refused")
        raise OAuthInvalidGrant("the username or the password is wrong")
    if issuer.hasher.check_needs_rehash(customer.password_hash):
        rehashed = await issuer.hash_secret(password)
        async with sessions() as session, session.begin():
            await repository.set_password_hash(session, customer.id, rehashed)
    return customer


async def password_grant(
    sessions: SessionMaker,
    issuer: Issuer,
    *,
    request: TokenRequest,
    client_address: str,
    now: datetime,
) -> TokenResponse:
    assert request.username is not None, "the parser requires a username"
    assert request.password is not None, "the parser requires a password"
    scopes = rules.customer_scopes(request.requested_scopes)
    customer = await authenticate_customer(
        sessions,
        issuer,
        email=request.username,
        password=request.password,
        client_address=client_address,
    )
    async with sessions() as session, session.begin():
        refresh_token = await new_refresh_family(
            session, issuer, customer_id=customer.id, scopes=scopes, now=now
        )
    log.info("token.issued", grant="password", subject=str(customer.id))
    return token_response(
        issuer,
        issuer.access_token(subject=str(customer.id), kind=PrincipalKind.customer, scopes=scopes),
        scopes,
        refresh_token=refresh_token,
    )


async def refresh_grant(
    sessions: SessionMaker, issuer: Issuer, *, request: TokenRequest, now: datetime
) -> TokenResponse:
    """Rotate: the presented token is used up and a new one of its family comes back. A
    token shown a second time revokes the whole family (RFC 6819 5.2.2.3)."""
    assert request.refresh_token is not None, "the parser requires a refresh token"
    refresh_token = rules.new_refresh_token()
    scopes: frozenset[Scope] = frozenset()
    allowed: frozenset[Scope] = frozenset()
    # The block ends normally in every case, so a revocation commits although the
    # request is refused after it.
    async with sessions() as session, session.begin():
        row = await repository.lock_refresh_token(session, rules.token_hash(request.refresh_token))
        if row is None:
            decision = rules.RefreshDecision(False, False, "the refresh token is unknown")
        else:
            decision = rules.judge_refresh(
                used_at=row.used_at, revoked_at=row.revoked_at, expires_at=row.expires_at, now=now
            )
        if row is not None and decision.revoke_family:
            revoked = await repository.revoke_refresh_family(session, row.family_id, now=now)
            log.warning("token.refresh_reused", family_id=str(row.family_id), revoked=revoked)
        elif row is not None and decision.allowed:
            decision, allowed = await _renewable_scopes(session, row, client_id=request.client_id)
        if row is not None and decision.allowed:
            scopes = rules.narrowed_scopes(request.requested_scopes, allowed=allowed)
            await repository.mark_refresh_token_used(session, row.id, now=now)
            # The family keeps the deadline of its first token: rotation is no way to stay
            # signed in forever. It keeps what the renewal still allows, never more.
            await repository.insert_refresh_token(
                session,
                family_id=row.family_id,
                customer_id=row.customer_id,
                staff_id=row.staff_id,
                client_id=row.client_id,
                token_hash=rules.token_hash(refresh_token),
                scopes=sorted(scope.value for scope in allowed),
                created_at=now,
                expires_at=row.expires_at,
            )
    if row is None or not decision.allowed:
        raise OAuthInvalidGrant(decision.reason)
    subject, kind = token_subject(customer_id=row.customer_id, staff_id=row.staff_id)
    log.info("token.issued", grant="refresh_token", subject=subject)
    return token_response(
        issuer,
        issuer.access_token(subject=subject, kind=kind, scopes=scopes),
        scopes,
        refresh_token=refresh_token,
    )


def staff_subject(staff_id: uuid.UUID) -> str:
    """A member as their tokens and every audit trail name them: `staff:<id>`."""
    return f"{STAFF_SUBJECT_PREFIX}{staff_id}"


def token_subject(
    *, customer_id: uuid.UUID | None, staff_id: uuid.UUID | None
) -> tuple[str, PrincipalKind]:
    """The `sub` and kind of an access token for a customer or (`staff:<id>`) a member."""
    if staff_id is not None:
        return staff_subject(staff_id), PrincipalKind.operator
    assert customer_id is not None, "a token names a customer or a staff member"
    return str(customer_id), PrincipalKind.customer


async def _renewable_scopes(
    session: AsyncSession, row: RefreshTokenRow, *, client_id: str | None
) -> tuple[rules.RefreshDecision, frozenset[Scope]]:
    """What a live refresh token may still renew to: its scopes, within its client's
    ceiling and, for a member, their role's scopes today; refused for another client, a
    client gone, or a member disabled."""
    scopes = frozenset(Scope(name) for name in row.scopes)
    if client_id is not None and client_id != row.client_id:
        return rules.RefreshDecision(False, False, "the refresh token is another client's"), scopes
    if row.client_id is not None:
        client = await repository.get_client(session, row.client_id)
        if client is None or client.disabled_at is not None:
            return rules.RefreshDecision(False, False, "the client is disabled"), scopes
        scopes &= frozenset(Scope(name) for name in client.scopes)
    if row.staff_id is not None:
        member = await repository.get_staff(session, row.staff_id)
        if member is None or member.disabled_at is not None:
            return rules.RefreshDecision(False, False, "the staff member is disabled"), scopes
        scopes &= STAFF_ROLE_SCOPES[StaffRole(member.role)]
    if not scopes:
        return rules.RefreshDecision(False, False, "no scope of the token is left"), scopes
    return rules.RefreshDecision(True, False, ""), scopes


async def client_credentials_grant(
    sessions: SessionMaker, issuer: Issuer, *, request: TokenRequest, now: datetime
) -> TokenResponse:
    credentials = request.client
    assert credentials is not None, "the parser requires client credentials"
    async with sessions() as session, session.begin():
        client = await repository.get_client(session, credentials.client_id)
    if client is not None and client.disabled_at is not None:
        client = None
    stored_hash = None if client is None else client.secret_hash
    verified = await issuer.verify_secret(stored_hash, credentials.client_secret)
    if client is None or not verified:
        log.info("token.client_refused", client_id=credentials.client_id)
        raise OAuthInvalidClient("the client id or the secret is wrong")
    allowed = frozenset(Scope(name) for name in client.scopes)
    scopes = rules.narrowed_scopes(request.requested_scopes, allowed=allowed)
    log.info("token.issued", grant="client_credentials", subject=client.client_id)
    return token_response(
        issuer,
        issuer.access_token(
            subject=client.client_id, kind=PrincipalKind(client.kind), scopes=scopes
        ),
        scopes,
        refresh_token=None,
    )


async def new_refresh_family(
    session: AsyncSession,
    issuer: Issuer,
    *,
    customer_id: uuid.UUID | None,
    scopes: frozenset[Scope],
    now: datetime,
    staff_id: uuid.UUID | None = None,
    client_id: str | None = None,
    family_id: uuid.UUID | None = None,
) -> str:
    """A first refresh token, of a new family (`family_id` or a fresh one): the token."""
    token = rules.new_refresh_token()
    await repository.insert_refresh_token(
        session,
        family_id=family_id or uuid.uuid4(),
        customer_id=customer_id,
        staff_id=staff_id,
        client_id=client_id,
        token_hash=rules.token_hash(token),
        scopes=sorted(scope.value for scope in scopes),
        created_at=now,
        expires_at=now + timedelta(seconds=issuer.refresh_token_lifetime_seconds),
    )
    return token


def token_response(
    issuer: Issuer, access_token: str, scopes: frozenset[Scope], *, refresh_token: str | None
) -> TokenResponse:
    return TokenResponse(
        access_token=access_token,
        expires_in=issuer.access_token_lifetime_seconds,
        scope=rules.scope_text(scopes),
        refresh_token=refresh_token,
    )


# --- Startup ------------------------------------------------------------------------------


def _system_event(
    action: str,
    *,
    subject_type: str,
    subject_id: str,
    now: datetime,
    event_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEventCreate:
    return AuditEventCreate(
        id=event_id or uuid.uuid4(),
        occurred_at=now,
        actor_id=SYSTEM_ACTOR,
        actor_type=ActorType.system,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=before,
        after=after,
        outcome="succeeded",
    )


async def bootstrap(
    sessions: SessionMaker,
    issuer: Issuer,
    *,
    clients: Sequence[BootstrapClient],
    now: Callable[[], datetime],
) -> None:
    """Record a newly active signing key and upsert the configured clients, in one
    transaction that replicas starting at once take turns at."""
    async with sessions() as session, session.begin():
        await repository.lock_startup(session)
        await _record_active_key(session, issuer, now=now())
        await _upsert_clients(session, issuer, clients=clients, now=now())


async def _record_active_key(session: AsyncSession, issuer: Issuer, *, now: datetime) -> None:
    action = "signing_key.activated"
    last = await repository.last_audit_event(session, action=action)
    kid = issuer.keys.active.kid
    if last is not None and last.subject_id == kid:
        return
    previous_kid = None if last is None else last.subject_id
    # Derived from the transition, so a replica that raced this one writes nothing new.
    event_id = uuid.uuid5(AUDIT_ID_NAMESPACE, f"{action}:{previous_kid}:{kid}")
    event = _system_event(
        action,
        subject_type="signing_key",
        subject_id=kid,
        now=now,
        event_id=event_id,
        before=None if previous_kid is None else {"kid": previous_kid},
        after={"kid": kid, "name": issuer.keys.active_name},
    )
    await audit.append(session, AUDIT_EVENTS, event)
    log.info("signing_key.activated", kid=kid, previous_kid=previous_kid)


async def _upsert_clients(
    session: AsyncSession,
    issuer: Issuer,
    *,
    clients: Sequence[BootstrapClient],
    now: datetime,
) -> None:
    """Make the stored clients what the configuration says: register the new ones, update
    the changed ones, disable those it no longer names; each change audited."""
    stored = {row.client_id: row for row in await repository.list_clients(session)}
    configured = {client.client_id for client in clients}
    assert len(configured) == len(clients), "bootstrap client ids are unique"
    for client in clients:
        row = stored.get(client.client_id)
        if row is None:
            await _register_client(session, issuer, client, now=now)
        else:
            await _update_client(session, issuer, client, row, now=now)
    for client_id, row in stored.items():
        if client_id in configured or row.disabled_at is not None:
            continue
        # A client taken out of the configuration must stop getting tokens.
        await repository.update_client(session, client_id, disabled_at=now, updated_at=now)
        await _audit_client(session, "client.disabled", client_id, now=now)


async def _audit_client(
    session: AsyncSession,
    action: str,
    client_id: str,
    *,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    event = _system_event(
        action, subject_type="client", subject_id=client_id, now=now, before=before, after=after
    )
    await audit.append(session, AUDIT_EVENTS, event)
    log.info(action, client_id=client_id)


def _shape(kind: str, scopes: list[str], redirect_uris: list[str], signs_in: str) -> dict[str, Any]:
    # Redirect URIs and whom the client signs in only where there are redirect URIs (a
    # public client), so that the shape of a service or operator client, and the audit
    # events that record it, stay what they were before them.
    shape: dict[str, Any] = {"kind": kind, "scopes": sorted(scopes)}
    if redirect_uris:
        shape["redirect_uris"] = list(redirect_uris)
        shape["signs_in"] = signs_in
    return shape


def _shape_of(client: BootstrapClient) -> dict[str, Any]:
    scopes = [scope.value for scope in client.scopes]
    return _shape(client.kind, scopes, client.redirect_uris, client.signs_in)


async def _register_client(
    session: AsyncSession, issuer: Issuer, client: BootstrapClient, *, now: datetime
) -> None:
    shape = _shape_of(client)
    secret = client.client_secret
    await repository.insert_client(
        session,
        client_id=client.client_id,
        secret_hash=None if secret is None else await issuer.hash_secret(secret.get_secret_value()),
        kind=client.kind,
        scopes=shape["scopes"],
        redirect_uris=client.redirect_uris,
        signs_in=client.signs_in,
        now=now,
    )
    await _audit_client(session, "client.registered", client.client_id, now=now, after=shape)


async def _update_client(
    session: AsyncSession,
    issuer: Issuer,
    client: BootstrapClient,
    row: ClientRow,
    *,
    now: datetime,
) -> None:
    """Bring a stored client in line with its configuration: kind, scopes, redirect URIs,
    enabled, secret. One statement: the database holds a public client to no secret and a
    confidential one to a secret at every statement, so a kind changes with its secret."""
    shape = _shape_of(client)
    before = _shape(row.kind, list(row.scopes), list(row.redirect_uris), row.signs_in)
    secret_changed, secret_hash = await _configured_secret_hash(issuer, client, row)
    shape_changed = before != shape or row.disabled_at is not None
    values: dict[str, Any] = {"updated_at": now}
    if shape_changed:
        values |= {
            "kind": client.kind,
            "scopes": shape["scopes"],
            "redirect_uris": client.redirect_uris,
            "signs_in": client.signs_in,
            "disabled_at": None,
        }
    if secret_changed:
        values["secret_hash"] = secret_hash
    if not shape_changed and not secret_changed:
        return
    await repository.update_client(session, client.client_id, **values)
    if shape_changed:
        await _audit_client(
            session,
            "client.updated",
            client.client_id,
            now=now,
            before={**before, "disabled": row.disabled_at is not None},
            after={**shape, "disabled": False},
        )
    if secret_changed:
        await _audit_client(session, "client.secret_changed", client.client_id, now=now)


async def _configured_secret_hash(
    issuer: Issuer, client: BootstrapClient, row: ClientRow
) -> tuple[bool, str | None]:
    """Whether the configured secret differs from the stored one, and the hash to store
    (None for a public client, which keeps no secret)."""
    if client.client_secret is None:
        return row.secret_hash is not None, None
    secret = client.client_secret.get_secret_value()
    if row.secret_hash is not None and await issuer.verify_secret(row.secret_hash, secret):
        return False, row.secret_hash
    return True, await issuer.hash_secret(secret)
