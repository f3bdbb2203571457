"""Identity rules with no web framework and no database: scopes, grants, secrets, shapes.

The token endpoint (`accounts.identity.api`) parses a form into a `TokenRequest`, the
issuer (`accounts.identity.service`) checks credentials, and these functions decide what
a principal may be given.
"""

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from accounts.identity.errors import (
    OAuthInvalidClient,
    OAuthInvalidRequest,
    OAuthInvalidScope,
    OAuthUnsupportedGrantType,
)
from contracts.auth import CUSTOMER_SCOPES, Scope
from contracts.common import StrictModel
from contracts.examples import EXAMPLE_CUSTOMER_ID, EXAMPLE_TIME

# Field lengths the token endpoint accepts (RFC 6749 sets none; we do).
USERNAME_LENGTH_MAX: Final = 254
PASSWORD_LENGTH_MIN: Final = 10
PASSWORD_LENGTH_MAX: Final = 128
CLIENT_ID_LENGTH_MAX: Final = 64
CLIENT_SECRET_LENGTH_MAX: Final = 256
SCOPE_LENGTH_MAX: Final = 1000
REFRESH_TOKEN_LENGTH_MAX: Final = 200
GRANT_TYPE_LENGTH_MAX: Final = 100
AUTHORIZATION_CODE_LENGTH_MAX: Final = 200
REDIRECT_URI_LENGTH_MAX: Final = 2000
# RFC 7636 4.1: a verifier (and so an S256 challenge's base64url text) is 43 to 128 characters.
PKCE_LENGTH_MIN: Final = 43
PKCE_LENGTH_MAX: Final = 128
_REFRESH_TOKEN_BYTES: Final = 32
# 256 bits: RFC 6749 10.10 wants a guess to be infeasible; 128 would do.
_AUTHORIZATION_CODE_BYTES: Final = 32
# RFC 7636 4.1 `unreserved` characters; an S256 challenge is base64url without padding.
_PKCE_CHARACTERS: Final = re.compile(r"[A-Za-z0-9._~-]+")


# --- Grants ------------------------------------------------------------------------------


class GrantType(enum.StrEnum):
    password = "password"  # noqa: S105 - a grant type name, not a secret
    refresh_token = "refresh_token"  # noqa: S105 - a grant type name, not a secret
    client_credentials = "client_credentials"
    authorization_code = "authorization_code"


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class TokenRequest:
    """A parsed, length-checked token request; credentials not yet verified."""

    grant_type: GrantType
    requested_scopes: frozenset[Scope] | None
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    client: ClientCredentials | None = None
    # A public client names itself (the code grant; optional with refresh_token).
    client_id: str | None = None
    code: str | None = None
    redirect_uri: str | None = None
    code_verifier: str | None = None


_FIELD_LIMITS: Final = {
    "grant_type": GRANT_TYPE_LENGTH_MAX,
    "username": USERNAME_LENGTH_MAX,
    "password": PASSWORD_LENGTH_MAX,
    "scope": SCOPE_LENGTH_MAX,
    "refresh_token": REFRESH_TOKEN_LENGTH_MAX,
    "client_id": CLIENT_ID_LENGTH_MAX,
    "client_secret": CLIENT_SECRET_LENGTH_MAX,
    "code": AUTHORIZATION_CODE_LENGTH_MAX,
    "redirect_uri": REDIRECT_URI_LENGTH_MAX,
    # Longer than a verifier may be, so that too long a verifier gets its own message.
    "code_verifier": PKCE_LENGTH_MAX + 1,
}


def parse_token_request(
    form: Mapping[str, list[str]], *, authorization: str | None
) -> TokenRequest:
    """The token request a form (each field with all its values) and an optional
    `Authorization` header make, or the RFC 6749 error it deserves."""
    fields = single_fields(form, _FIELD_LIMITS)
    grant = fields.get("grant_type")
    if not grant:
        raise OAuthInvalidRequest("grant_type is required")
    try:
        grant_type = GrantType(grant)
    except ValueError:
        raise OAuthUnsupportedGrantType(
            "grant_type must be password, refresh_token, client_credentials or authorization_code"
        ) from None
    scopes = parse_scopes(fields["scope"]) if "scope" in fields else None
    if grant_type is GrantType.authorization_code:
        return _authorization_code_request(fields)
    client = client_credentials(fields, authorization=authorization)
    if grant_type is GrantType.password:
        username, password = fields.get("username"), fields.get("password")
        if not username or not password:
            raise OAuthInvalidRequest("the password grant needs username and password")
        return TokenRequest(grant_type, scopes, username=username, password=password)
    if grant_type is GrantType.refresh_token:
        refresh_token = fields.get("refresh_token")
        if not refresh_token:
            raise OAuthInvalidRequest("the refresh_token grant needs refresh_token")
        # A public client's renewal names it (RFC 6749 6); a confidential one authenticates.
        client_id = client.client_id if client is not None else fields.get("client_id") or None
        return TokenRequest(grant_type, scopes, refresh_token=refresh_token, client_id=client_id)
    if client is None:
        raise OAuthInvalidClient("client_credentials needs client authentication")
    return TokenRequest(grant_type, scopes, client=client)


def single_fields(form: Mapping[str, list[str]], limits: Mapping[str, int]) -> dict[str, str]:
    """The form's known fields, each once and within its length; invalid_request if not.
    Unknown fields are ignored (RFC 6749 3.2)."""
    fields: dict[str, str] = {}
    for name, values in form.items():
        if name not in limits:
            continue
        if len(values) != 1:
            raise OAuthInvalidRequest(f"the parameter {name} is repeated")
        if len(values[0]) > limits[name]:
            raise OAuthInvalidRequest(f"the parameter {name} is too long")
        fields[name] = values[0]
    return fields


def _authorization_code_request(fields: Mapping[str, str]) -> TokenRequest:
    """RFC 6749 4.1.3 with RFC 7636 4.5: the code, its redirect URI, the public client's
    id and the PKCE verifier, all required."""
    missing = [
        name
        for name in ("code", "redirect_uri", "client_id", "code_verifier")
        if not fields.get(name)
    ]
    if missing:
        raise OAuthInvalidRequest(f"the authorization_code grant needs {', '.join(missing)}")
    verifier = fields["code_verifier"]
    problem = pkce_refusal(verifier, "code_verifier")
    if problem is not None:
        raise OAuthInvalidRequest(problem)
    return TokenRequest(
        GrantType.authorization_code,
        None,
        client_id=fields["client_id"],
        code=fields["code"],
        redirect_uri=fields["redirect_uri"],
        code_verifier=verifier,
    )


def client_credentials(
    fields: Mapping[str, str], *, authorization: str | None
) -> ClientCredentials | None:
    """Client id and secret from HTTP Basic or from the form, never both (RFC 6749 2.3).
    A client id alone is a public client naming itself: no credentials."""
    if "client_secret" not in fields and authorization is None:
        return None
    in_form = "client_id" in fields or "client_secret" in fields
    if authorization is not None and authorization.lower().startswith("basic "):
        if in_form:
            raise OAuthInvalidRequest("authenticate the client one way: header or form")
        return _basic(authorization[len("basic ") :].strip())
    if not in_form:
        return None
    client_id, client_secret = fields.get("client_id", ""), fields.get("client_secret", "")
    if not client_id or not client_secret:
        raise OAuthInvalidClient("client_id and client_secret are both required")
    return ClientCredentials(client_id, client_secret)


def _basic(encoded: str) -> ClientCredentials:
    if len(encoded) > 4 * (CLIENT_ID_LENGTH_MAX + CLIENT_SECRET_LENGTH_MAX):
        raise OAuthInvalidClient("the Basic credentials are too long")
    try:
        pair = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthInvalidClient("the Basic credentials are malformed") from None
    raw_id, separator, raw_secret = pair.partition(":")
    if not separator:
        raise OAuthInvalidClient("the Basic credentials are malformed")
    # RFC 6749 2.3.1: each half is form-encoded before it is joined.
    client_id, client_secret = unquote(raw_id), unquote(raw_secret)
    if not client_id or not client_secret:
        raise OAuthInvalidClient("the Basic credentials are malformed")
    if len(client_id) > CLIENT_ID_LENGTH_MAX or len(client_secret) > CLIENT_SECRET_LENGTH_MAX:
        raise OAuthInvalidClient("the Basic credentials are too long")
    return ClientCredentials(client_id, client_secret)


def parse_scopes(text: str) -> frozenset[Scope]:
    """A space-separated scope parameter; an unknown scope is invalid_scope."""
    names = text.split()
    if not names:
        raise OAuthInvalidScope("the scope parameter is empty")
    known = {scope.value: scope for scope in Scope}
    unknown = sorted(name for name in names if name not in known)
    if unknown:
        raise OAuthInvalidScope(f"unknown scope {unknown[0]!r}")
    return frozenset(known[name] for name in names)


def narrowed_scopes(
    requested: frozenset[Scope] | None, *, allowed: Collection[Scope]
) -> frozenset[Scope]:
    """What a token carries: everything allowed, or the requested part of it. Asking for
    more than the principal may have is invalid_scope, never a silent cut."""
    allowed_set = frozenset(allowed)
    if requested is None:
        return allowed_set
    beyond = sorted(scope.value for scope in requested - allowed_set)
    if beyond:
        raise OAuthInvalidScope(f"the scope {beyond[0]} is not available to this principal")
    return requested


def customer_scopes(requested: frozenset[Scope] | None) -> frozenset[Scope]:
    return narrowed_scopes(requested, allowed=CUSTOMER_SCOPES)


def scope_text(scopes: Collection[Scope]) -> str:
    return " ".join(sorted(scope.value for scope in scopes))


# --- Secrets -----------------------------------------------------------------------------


def new_refresh_token() -> str:
    return secrets.token_urlsafe(_REFRESH_TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database keeps of a refresh token: a leaked table replays nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalized_email(email: str) -> str:
    return email.strip().lower()


def new_authorization_code() -> str:
    return secrets.token_urlsafe(_AUTHORIZATION_CODE_BYTES)


# --- PKCE (RFC 7636) ----------------------------------------------------------------------


def pkce_refusal(value: str, name: str) -> str | None:
    """Why `value` cannot be a code verifier or an S256 challenge, or None: 43 to 128
    unreserved characters (RFC 7636 4.1, 4.2)."""
    if not PKCE_LENGTH_MIN <= len(value) <= PKCE_LENGTH_MAX:
        return f"{name} must be {PKCE_LENGTH_MIN} to {PKCE_LENGTH_MAX} characters"
    if _PKCE_CHARACTERS.fullmatch(value) is None:
        return f"{name} may hold only letters, digits and - . _ ~"
    return None


def s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str, challenge: str) -> bool:
    """Whether `verifier` is the one `challenge` was made from; in constant time."""
    return hmac.compare_digest(s256_challenge(verifier), challenge)


@dataclass(frozen=True)
class RefreshDecision:
    """What a presented refresh token allows, judged from its stored row."""

    allowed: bool
    # A token used before: somebody else holds a copy, so the family is burnt.
    revoke_family: bool
    reason: str


def judge_refresh(
    *,
    used_at: datetime | None,
    revoked_at: datetime | None,
    expires_at: datetime,
    now: datetime,
) -> RefreshDecision:
    if revoked_at is not None:
        return RefreshDecision(False, False, "the refresh token was revoked")
    if used_at is not None:
        return RefreshDecision(False, True, "the refresh token was already used")
    if expires_at <= now:
        return RefreshDecision(False, False, "the refresh token expired")
    return RefreshDecision(True, False, "")


# --- Shapes of the registration endpoint -------------------------------------------------


class CustomerCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                    "display_name": "Ada Lovelace",
                }
            ]
        }
    )

    email: str = Field(min_length=3, max_length=USERNAME_LENGTH_MAX)
    password: str = Field(min_length=PASSWORD_LENGTH_MIN, max_length=PASSWORD_LENGTH_MAX)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def _plausible_email(cls, value: str) -> str:
        # Deliverability is proven by mail, not by a regular expression; this only keeps
        # out what is surely not an address.
        address = value.strip()
        local, separator, domain = address.rpartition("@")
        if not separator or not local or "." not in domain or any(c.isspace() for c in address):
            raise ValueError("not an email address")
        return normalized_email(address)


class Customer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_CUSTOMER_ID,
                    "email": "ada@example.com",
                    "display_name": "Ada Lovelace",
                    "created_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    id: uuid.UUID
    email: str
    display_name: str | None
    created_at: datetime


class Jwks(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kty": "RSA",
                            "kid": "2026-12-primary",
                            "use": "sig",
                            "alg": "RS256",
                            "n": "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7",
                            "e": "AQAB",
                        }
                    ]
                }
            ]
        }
    )

    keys: list[dict[str, str]] = Field(max_length=20)
