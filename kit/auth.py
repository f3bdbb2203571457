"""Verifying bearer tokens, the same way in every service.

Tokens are JWTs signed RS256 by the accounts service. Every service verifies them against
the issuer's JWKS (fetched and cached; refetched, bounded, when a token names a `kid` we
have not seen, so a rotated key works at once; while the issuer is away the cached keys
keep verifying and nothing waits on it) with the algorithm pinned and `iss`,
`aud`, `exp`, `iat` and `sub` required; a valid token's signature is checked once per
process (remembered until its `exp`, while its key is still served). Scopes gate functions
(`require_scopes`); ownership of objects is the services' business.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol

import httpx
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwt
from jose.exceptions import JOSEError

from contracts.auth import PRINCIPAL_KIND_CLAIM, TOKEN_ALGORITHM, PrincipalKind, Scope
from kit.errors import Forbidden, ServiceUnavailable, Unauthorized

log = structlog.get_logger()

_TOKEN_LENGTH_MAX = 8192
_JWKS_KEYS_MAX = 20
# Verified tokens remembered per process: ~1 KB each (the token is the key), ~4 MB at most.
VERIFIED_TOKENS_MAX = 4096
# A starting service's first retries come this soon, doubling up to the refetch interval.
_FIRST_RETRY_SECONDS = 0.25
Jwk = dict[str, Any]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a customer, a service (the worker) or an operator."""

    subject: str
    kind: PrincipalKind
    scopes: frozenset[str]
    token_id: str | None = None

    @property
    def customer_id(self) -> str | None:
        """The customer this principal acts as; None for services and operators."""
        return self.subject if self.kind is PrincipalKind.customer else None

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes


class KeySource(Protocol):
    """Where verification keys come from: the issuer's JWKS, or a fixed set in tests."""

    async def keys(self) -> Mapping[str, Jwk]: ...

    async def refresh(self) -> Mapping[str, Jwk]: ...


class StaticKeySource:
    """A fixed set of public JWKs, e.g. the issuer's own keys, or a test's."""

    def __init__(self, keys: Mapping[str, Jwk]) -> None:
        self._keys = dict(keys)

    async def keys(self) -> Mapping[str, Jwk]:
        return self._keys

    async def refresh(self) -> Mapping[str, Jwk]:
        return self._keys

    def replace(self, keys: Mapping[str, Jwk]) -> None:
        self._keys = dict(keys)


class KeysStatus(StrEnum):
    """What a JWKS key source serves: fresh keys, cached keys while the issuer is away,
    or nothing yet (no fetch has succeeded since the service started)."""

    ok = "ok"
    cached = "cached: issuer unreachable"
    not_loaded = "not loaded"


class JwksKeySource:
    """The issuer's JWKS over HTTP, cached; no request ever waits on an issuer known away.

    A cache older than `ttl_seconds`, or a token naming an unknown kid, starts a refetch
    at most once per `refetch_interval_seconds`; the request waits for it at most
    `refetch_wait_seconds`, and not at all while the issuer is away (its last fetch failed
    or outlasted that wait). A failed fetch is retried in the background once per interval
    until the issuer answers.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        refetch_interval_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
        refetch_wait_seconds: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.refetch_interval_seconds = refetch_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.refetch_wait_seconds = refetch_wait_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), transport=transport, follow_redirects=False
        )
        self._keys: dict[str, Jwk] = {}
        self._loaded = False
        self._fetched_at = float("-inf")  # the last fetch that succeeded
        self._attempted_at = float("-inf")  # the last fetch started
        self._issuer_away = False
        self._failures = 0  # consecutive
        self._attempt: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def status(self) -> KeysStatus:
        if not self._loaded:
            return KeysStatus.not_loaded
        return KeysStatus.cached if self._issuer_away else KeysStatus.ok

    def start(self) -> None:
        """Begin the first fetch in the background (a service's startup)."""
        self._attempt_if_due()

    async def keys(self) -> Mapping[str, Jwk]:
        """The cached keys (refetched when older than the TTL); ServiceUnavailable while
        none has ever been fetched."""
        if not self._loaded:
            await self._refetch()
            if not self._loaded:
                # The token may well be good: 503 tells the caller to retry, where a 401
                # would send it to log in again, at an issuer that is not there.
                raise ServiceUnavailable(
                    "The token issuer's keys are not available yet.",
                    retry_after_seconds=math.ceil(self.refetch_interval_seconds) or 1,
                )
        elif time.monotonic() - self._fetched_at > self.ttl_seconds:
            # Waited for (boundedly) while the issuer answers, so a key it removed stops
            # verifying when the TTL says; in the background while it is away.
            await self._refetch()
        return self._keys

    async def refresh(self) -> Mapping[str, Jwk]:
        """The keys after a refetch if one is due and the issuer answers in time; else the
        cached keys at once."""
        await self._refetch()
        return self._keys

    async def _refetch(self) -> None:
        attempt = self._attempt_if_due()
        if attempt is None or self._issuer_away:
            return
        try:
            # Shielded: the fetch outlives a request that stops waiting for it.
            await asyncio.wait_for(asyncio.shield(attempt), self.refetch_wait_seconds)
        except TimeoutError:
            # A healthy issuer answers well within the wait: count it away until it does,
            # so no other request waits on this fetch.
            self._issuer_away = True

    def _attempt_if_due(self) -> asyncio.Task[None] | None:
        """The fetch in flight, else a new one if the interval has passed, else None."""
        if self._attempt is not None and not self._attempt.done():
            return self._attempt
        if self._closed or time.monotonic() - self._attempted_at < self.refetch_interval_seconds:
            return None
        return self._start_attempt()

    def _start_attempt(self) -> asyncio.Task[None]:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._attempted_at = time.monotonic()
        self._attempt = asyncio.create_task(self._fetch(), name=f"jwks-fetch {self.url}")
        return self._attempt

    async def _fetch(self) -> None:
        try:
            # httpx's timeout bounds each read, not the whole response: this bounds it all.
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._client.get(self.url)
            response.raise_for_status()
            keys = _jwks_of(response.json())
        except (httpx.HTTPError, ValueError, TimeoutError) as error:
            self._fetch_failed(error)
            return
        if self._issuer_away:
            log.info("auth.jwks_available", url=self.url)
        self._keys = keys
        self._loaded = True
        self._fetched_at = time.monotonic()
        self._issuer_away = False
        self._failures = 0

    def _fetch_failed(self, error: Exception) -> None:
        """Keep serving the keys we have; retry in the background after the interval (a
        starting service, with no keys, sooner: its issuer is usually starting beside it)."""
        self._issuer_away = True
        self._failures += 1
        delay_seconds = self.refetch_interval_seconds
        if not self._loaded:
            delay_seconds = min(delay_seconds, _FIRST_RETRY_SECONDS * 2 ** (self._failures - 1))
        log.warning(
            "auth.jwks_unavailable",
            url=self.url,
            error=type(error).__name__,
            cached_keys=len(self._keys),
            retry_in_seconds=delay_seconds,
        )
        if not self._closed:
            self._retry = asyncio.get_running_loop().call_later(delay_seconds, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if not self._closed and (self._attempt is None or self._attempt.done()):
            self._start_attempt()

    async def close(self) -> None:
        """Stop retrying, cancel a fetch in flight, close the HTTP client."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._attempt
        await self._client.aclose()


def _jwks_of(document: Any) -> dict[str, Jwk]:
    """The keys of a JWKS document by kid (at most 20); ValueError if it is no JWKS."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    return {
        key["kid"]: key
        for key in document["keys"][:_JWKS_KEYS_MAX]
        if isinstance(key, dict) and isinstance(key.get("kid"), str)
    }


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token verified once: whom it names, the key that checked it, until when."""

    principal: Principal
    kid: str
    key: Jwk
    expires_at: float


class TokenVerifier:
    """Verifies bearer tokens; a valid token's signature is checked once per process.

    A verified token is remembered (at most `verified_max`, the oldest forgotten first)
    until its `exp`, and used again only while the key source still serves the very key
    that verified it: a key removed or replaced by rotation refuses it at once.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        verified_max: int = VERIFIED_TOKENS_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_source = keys
        self.issuer = issuer
        self.audience = audience
        self._verified_max = verified_max
        # Wall-clock time, as jose reads `exp` and `nbf`.
        self._clock = clock
        # Insertion-ordered: when full, the oldest token is forgotten first.
        self._verified: dict[str, _Verified] = {}

    async def verify(self, token: str) -> Principal:
        """The principal a token names, or Unauthorized. Never trusts the token's header."""
        verified = self._verified.get(token)
        if verified is not None:
            if self._clock() < verified.expires_at:
                keys = await self.key_source.keys()
                if keys.get(verified.kid) == verified.key:
                    return verified.principal
            del self._verified[token]
        return await self._verify_signed(token)

    async def _verify_signed(self, token: str) -> Principal:
        if len(token) > _TOKEN_LENGTH_MAX:
            raise Unauthorized("The bearer token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise Unauthorized("The bearer token is malformed.") from None
        # Pinning the algorithm before looking at keys defeats `alg: none` and the
        # HS256-signed-with-the-public-key confusion.
        if header.get("alg") != TOKEN_ALGORITHM:
            raise Unauthorized("The bearer token is not signed with an accepted algorithm.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The bearer token names no signing key.")
        keys = await self.key_source.keys()
        key = keys.get(kid)
        if key is None:
            key = (await self.key_source.refresh()).get(kid)
        if key is None:
            raise Unauthorized("The bearer token was signed by an unknown key.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[TOKEN_ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_aud": True,
                    "require_iss": True,
                    "require_sub": True,
                    "leeway": 5,
                },
            )
        except JOSEError:
            raise Unauthorized("The bearer token is invalid or expired.") from None
        principal = _principal(claims)
        self._remember(token, _Verified(principal, kid, key, float(claims["exp"])), claims)
        return principal

    def _remember(self, token: str, verified: _Verified, claims: Mapping[str, Any]) -> None:
        """Remember a token only inside its strict validity: jose's 5 s leeway admits a
        token just past `exp` or just before `nbf`, and a cached answer must not stretch it."""
        now = self._clock()
        not_before = claims.get("nbf")
        if now >= verified.expires_at or (isinstance(not_before, int | float) and now < not_before):
            return
        if len(self._verified) >= self._verified_max:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = verified


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    scope = claims.get("scope", "")
    kind = claims.get(PRINCIPAL_KIND_CLAIM)
    if not isinstance(subject, str) or not isinstance(scope, str) or not isinstance(kind, str):
        raise Unauthorized("The bearer token's claims are malformed.")
    try:
        principal_kind = PrincipalKind(kind)
    except ValueError:
        raise Unauthorized("The bearer token names no principal kind.") from None
    token_id = claims.get("jti")
    return Principal(
        subject=subject,
        kind=principal_kind,
        scopes=frozenset(scope.split()),
        token_id=token_id if isinstance(token_id, str) else None,
    )


_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/oauth/token")


def token_verifier_of(app: Any) -> "TokenVerifier | None":
    """The verifier the service shell (kit.app) installed on `app`, if it has an issuer."""
    verifier = getattr(app.state, "token_verifier", None)
    return verifier if isinstance(verifier, TokenVerifier) else None


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's principal, from `Authorization: Bearer <token>`; 401 without one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required.")
    verifier = token_verifier_of(request.app)
    if verifier is None:
        raise Unauthorized("This service has no token issuer configured.")
    principal = await verifier.verify(credentials.credentials)
    structlog.contextvars.bind_contextvars(principal=principal.subject)
    request.state.principal = principal
    return principal


class ScopeRequirement:
    """A dependency that authenticates and then demands every scope of one of its
    `alternatives` (else 403); kit.openapi documents each operation's scopes from it."""

    def __init__(self, alternatives: tuple[tuple[Scope, ...], ...]) -> None:
        assert alternatives, "name at least one scope"
        assert all(alternatives), "an alternative without a scope would admit any caller"
        self.alternatives = alternatives

    async def __call__(self, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not any(all(map(principal.has, wanted)) for wanted in self.alternatives):
            raise Forbidden(f"This operation needs the scope {self._wanted(principal)}.")
        return principal

    def _wanted(self, principal: Principal) -> str:
        """What the caller lacks: the missing scopes of the one alternative, or each one."""
        if len(self.alternatives) == 1:
            return " ".join(
                scope.value for scope in self.alternatives[0] if not principal.has(scope)
            )
        return " or ".join(" ".join(wanted) for wanted in self.alternatives)


def require_scopes(*scopes: Scope) -> ScopeRequirement:
    """A dependency that authenticates and then demands every one of `scopes` (else 403)."""
    assert scopes, "name at least one scope; use `authenticate` for any caller"
    return ScopeRequirement((scopes,))


def require_any_scope(*scopes: Scope) -> ScopeRequirement:
    """A dependency that demands at least one of `scopes` (e.g. a customer or an operator)."""
    assert scopes, "name at least one scope"
    return ScopeRequirement(tuple((scope,) for scope in scopes))
