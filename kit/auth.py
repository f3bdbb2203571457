"""Verifying bearer tokens, the same way in every service.

Tokens are JWTs signed RS256 by the accounts service. Every service verifies them against
the issuer's JWKS (fetched and cached; refetched, bounded, when a token names a `kid` we
have not seen, so a rotated key works at once) with the algorithm pinned and `iss`,
`aud`, `exp`, `iat` and `sub` required. Scopes gate functions (`require_scopes`);
ownership of objects is the services' business.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import jwt
from jose.exceptions import JOSEError

from contracts.auth import PRINCIPAL_KIND_CLAIM, TOKEN_ALGORITHM, PrincipalKind, Scope
from kit.errors import Forbidden, Unauthorized

log = structlog.get_logger()

_TOKEN_LENGTH_MAX = 8192
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


class JwksKeySource:
    """The issuer's JWKS over HTTP, cached for `ttl_seconds`.

    A token with an unknown `kid` triggers a refetch, but at most once per
    `refetch_interval_seconds`, so a flood of forged kids cannot hammer the issuer.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        refetch_interval_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.refetch_interval_seconds = refetch_interval_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), transport=transport, follow_redirects=False
        )
        self._keys: dict[str, Jwk] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def keys(self) -> Mapping[str, Jwk]:
        if time.monotonic() - self._fetched_at > self.ttl_seconds:
            return await self._fetch(force=True)
        return self._keys

    async def refresh(self) -> Mapping[str, Jwk]:
        return await self._fetch(force=False)

    async def _fetch(self, *, force: bool) -> Mapping[str, Jwk]:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if not force and age < self.refetch_interval_seconds:
                return self._keys
            if force and age <= self.ttl_seconds:
                return self._keys  # another request refreshed it while we waited
            try:
                response = await self._client.get(self.url)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as error:
                log.warning("auth.jwks_unavailable", url=self.url, error=type(error).__name__)
                # Keep serving the keys we have; try again after the refetch interval.
                self._fetched_at = time.monotonic() - self.ttl_seconds
                return self._keys
            self._keys = {
                key["kid"]: key
                for key in document.get("keys", [])[:20]
                if isinstance(key, dict) and isinstance(key.get("kid"), str)
            }
            self._fetched_at = time.monotonic()
            return self._keys

    async def close(self) -> None:
        await self._client.aclose()


class TokenVerifier:
    def __init__(self, keys: KeySource, *, issuer: str, audience: str) -> None:
        self.key_source = keys
        self.issuer = issuer
        self.audience = audience

    async def verify(self, token: str) -> Principal:
        """The principal a token names, or Unauthorized. Never trusts the token's header."""
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
        return _principal(claims)


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


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's principal, from `Authorization: Bearer <token>`; 401 without one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required.")
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise Unauthorized("This service has no token issuer configured.")
    principal = await verifier.verify(credentials.credentials)
    structlog.contextvars.bind_contextvars(principal=principal.subject)
    request.state.principal = principal
    return principal


def require_scopes(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and then demands every one of `scopes` (else 403)."""
    assert scopes, "name at least one scope; use `authenticate` for any caller"

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        missing = [scope.value for scope in scopes if not principal.has(scope)]
        if missing:
            raise Forbidden(f"This operation needs the scope {' '.join(missing)}.")
        return principal

    return dependency


def require_any_scope(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that demands at least one of `scopes` (e.g. a customer or an operator)."""
    assert scopes, "name at least one scope"

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not any(principal.has(scope) for scope in scopes):
            wanted = " or ".join(scope.value for scope in scopes)
            raise Forbidden(f"This operation needs the scope {wanted}.")
        return principal

    return dependency
