"""Identity wire contracts: scopes, principals and the OAuth2 token response."""

import enum
from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

TOKEN_PATH: Final = "/v1/oauth/token"
# Customers register here (no token needed), then ask the token endpoint for one.
CUSTOMERS_PATH: Final = "/v1/customers"
JWKS_PATH: Final = "/.well-known/jwks.json"
TOKEN_ISSUER_DEFAULT: Final = "sagabank-accounts"
# The one signing algorithm accepted anywhere: asymmetric, so no service can mint tokens.
TOKEN_ALGORITHM: Final = "RS256"
# Private claim naming what kind of principal the subject is.
PRINCIPAL_KIND_CLAIM: Final = "sbk_kind"


class Scope(enum.StrEnum):
    # Customers
    accounts_read = "accounts:read"
    accounts_write = "accounts:write"
    transfers_read = "transfers:read"
    transfers_write = "transfers:write"
    webhooks_manage = "webhooks:manage"
    # Operators
    accounts_admin = "accounts:admin"
    reviews_write = "reviews:write"
    audit_read = "audit:read"
    # Re-seal the secrets a service keeps at rest under its newest key (`sagabank secrets rotate`).
    secrets_rotate = "secrets:rotate"
    # Reverse any completed transfer (disputes); a payee refunds without it.
    transfers_reverse = "transfers:reverse"
    # Add, disable and list the staff who sign in as people (`sagabank staff`).
    staff_manage = "staff:manage"
    # The saga's worker (and other internal callers)
    ledger_write = "ledger:write"
    fraud_score = "fraud:score"
    notifications_publish = "notifications:publish"
    transfers_internal = "transfers:internal"


# One line each, as the OAuth2 scheme of every service's OpenAPI (and Swagger UI) shows them.
SCOPE_DESCRIPTIONS: Final[Mapping[Scope, str]] = {
    Scope.accounts_read: "Read your bank accounts, balances and statements.",
    Scope.accounts_write: "Open bank accounts.",
    Scope.transfers_read: "Read your transfers, their steps and reversals.",
    Scope.transfers_write: "Send and cancel transfers, refund ones paid to you, standing orders.",
    Scope.webhooks_manage: "Manage your webhook endpoints and email contact; read deliveries.",
    Scope.accounts_admin: "Operators: freeze, close, fund and read any account and its data.",
    Scope.reviews_write: "Operators: decide transfers held for fraud review.",
    Scope.audit_read: "Operators: read, verify and export the audit trails.",
    Scope.secrets_rotate: "Operators: re-seal stored secrets under the newest key.",
    Scope.transfers_reverse: "Operators: reverse any completed transfer (disputes).",
    Scope.staff_manage: "Operators: add, disable and list staff.",
    Scope.ledger_write: "The saga's worker: validate, hold, post and void ledger transfers.",
    Scope.fraud_score: "The saga's worker: score transfers and report their outcomes.",
    Scope.notifications_publish: "The saga's worker: publish transfer events.",
    Scope.transfers_internal: "The saga's worker: record transfer steps and occurrences.",
}
assert set(SCOPE_DESCRIPTIONS) == set(Scope), set(Scope) - set(SCOPE_DESCRIPTIONS)
# The public client Swagger UI's Authorize names at the issuer (each service's /docs).
DOCS_CLIENT_ID: Final = "sagabank-docs"
# Where Swagger UI receives the authorization code: its client's registered redirect URIs.
DOCS_REDIRECT_PATH: Final = "/docs/oauth2-redirect"
# The public client `sagabank login` names: it signs customers in through the browser, back
# to a port it listens on for the one answer; registered without a port, any port is
# accepted on this loopback IP (RFC 8252 7.3; docs/decisions/0044).
CLI_CLIENT_ID: Final = "sagabank-cli"
CLI_REDIRECT_URI: Final = "http://127.0.0.1/callback"


AUDIENCE_PREFIX: Final = "sagabank:"


class ServiceAudience(enum.StrEnum):
    """The `aud` each service accepts by default (`<PREFIX>_AUTH_AUDIENCE` overrides it)."""

    accounts = f"{AUDIENCE_PREFIX}accounts"
    transactions = f"{AUDIENCE_PREFIX}transactions"
    fraud = f"{AUDIENCE_PREFIX}fraud"
    notifications = f"{AUDIENCE_PREFIX}notifications"


def audience_of_service(service: str) -> str:
    """The audience a service named `service` accepts unless configured otherwise."""
    return f"{AUDIENCE_PREFIX}{service}"


_EVERY_SERVICE: Final = frozenset(ServiceAudience)
# The services whose routes check each scope: a token is minted for exactly the services its
# scopes need, so one leaked for fraud alone opens nothing at accounts. Operators' scopes
# reach every service that has an admin or audit route.
SCOPE_AUDIENCES: Final[Mapping[Scope, frozenset[ServiceAudience]]] = {
    Scope.accounts_read: frozenset({ServiceAudience.accounts}),
    Scope.accounts_write: frozenset({ServiceAudience.accounts}),
    Scope.transfers_read: frozenset({ServiceAudience.transactions}),
    Scope.transfers_write: frozenset({ServiceAudience.transactions}),
    Scope.webhooks_manage: frozenset({ServiceAudience.notifications}),
    Scope.accounts_admin: _EVERY_SERVICE,
    Scope.reviews_write: frozenset({ServiceAudience.transactions, ServiceAudience.fraud}),
    Scope.audit_read: _EVERY_SERVICE,
    Scope.ledger_write: frozenset({ServiceAudience.accounts}),
    Scope.fraud_score: frozenset({ServiceAudience.fraud}),
    Scope.notifications_publish: frozenset({ServiceAudience.notifications}),
    Scope.transfers_internal: frozenset({ServiceAudience.transactions}),
    # Every service that keeps secrets sealed at rest: accounts its staff's TOTP secrets.
    Scope.secrets_rotate: frozenset(
        {ServiceAudience.accounts, ServiceAudience.transactions, ServiceAudience.notifications}
    ),
    Scope.transfers_reverse: frozenset({ServiceAudience.transactions}),
    Scope.staff_manage: frozenset({ServiceAudience.accounts}),
}
# A scope without audiences would mint tokens no service accepts (or fail to mint at all).
assert set(SCOPE_AUDIENCES) == set(Scope), set(Scope) - set(SCOPE_AUDIENCES)


def audiences_of(scopes: Iterable[Scope]) -> list[str]:
    """The `aud` of a token granting `scopes`: their services' audiences, sorted."""
    return sorted({audience.value for scope in scopes for audience in SCOPE_AUDIENCES[scope]})


class PrincipalKind(enum.StrEnum):
    customer = "customer"
    service = "service"
    operator = "operator"


CUSTOMER_SCOPES: Final = frozenset(
    {
        Scope.accounts_read,
        Scope.accounts_write,
        Scope.transfers_read,
        Scope.transfers_write,
        Scope.webhooks_manage,
    }
)
OPERATOR_SCOPES: Final = frozenset(
    {
        Scope.accounts_read,
        Scope.accounts_admin,
        Scope.transfers_read,
        Scope.reviews_write,
        Scope.audit_read,
        Scope.secrets_rotate,
        Scope.transfers_reverse,
        Scope.staff_manage,
    }
)
WORKER_SCOPES: Final = frozenset(
    {
        Scope.accounts_read,
        Scope.ledger_write,
        Scope.fraud_score,
        Scope.notifications_publish,
        Scope.transfers_internal,
    }
)


class StaffRole(enum.StrEnum):
    """What a staff member (a person who signs in) may do; STAFF_ROLE_SCOPES says how."""

    reviewer = "reviewer"
    auditor = "auditor"
    admin = "admin"


# The one place a role becomes scopes (docs/decisions/0035-staff-and-roles.md has why).
# Reviewers decide reviews and read what they decide on; auditors read everything and
# change nothing; admins hold the operator client's scopes.
STAFF_ROLE_SCOPES: Final[Mapping[StaffRole, frozenset[Scope]]] = {
    StaffRole.reviewer: frozenset({Scope.reviews_write, Scope.transfers_read, Scope.accounts_read}),
    StaffRole.auditor: frozenset({Scope.audit_read, Scope.transfers_read, Scope.accounts_read}),
    StaffRole.admin: OPERATOR_SCOPES,
}
assert set(STAFF_ROLE_SCOPES) == set(StaffRole)
# A person never holds a customer-only or a worker scope.
assert all(scopes <= OPERATOR_SCOPES for scopes in STAFF_ROLE_SCOPES.values())


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIzZjFjIn0.c2lnbmF0dXJl",
                    "token_type": "Bearer",
                    "expires_in": 900,
                    "scope": "accounts:read transfers:read transfers:write",
                    "refresh_token": "rt_Qm9vbXNoYWthbGFrYS1yZWZyZXNoLXRva2Vu",
                }
            ]
        }
    )

    access_token: str = Field(max_length=4096)
    token_type: str = "Bearer"
    expires_in: int
    scope: str = Field(max_length=1000)
    refresh_token: str | None = Field(default=None, max_length=512)


METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
REVOCATION_PATH: Final = "/v1/oauth/revoke"
# The authorization code flow with PKCE (RFC 6749 4.1, RFC 7636): the issuer's sign-in page.
AUTHORIZE_PATH: Final = "/v1/oauth/authorize"


class AuthorizationServerMetadata(BaseModel):
    """RFC 8414 section 2: what the issuer serves; a field it does not serve is absent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "issuer": "https://id.bank.example",
                    "authorization_endpoint": "https://id.bank.example/v1/oauth/authorize",
                    "token_endpoint": "https://id.bank.example/v1/oauth/token",
                    "jwks_uri": "https://id.bank.example/.well-known/jwks.json",
                    "revocation_endpoint": "https://id.bank.example/v1/oauth/revoke",
                    "response_types_supported": ["code"],
                    "grant_types_supported": [
                        "authorization_code",
                        "client_credentials",
                        "refresh_token",
                    ],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                        "none",
                    ],
                    "revocation_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                        "none",
                    ],
                    "scopes_supported": [
                        "accounts:read",
                        "accounts:write",
                        "transfers:read",
                        "transfers:write",
                    ],
                    "code_challenge_methods_supported": ["S256"],
                }
            ]
        }
    )

    issuer: str = Field(max_length=200)
    authorization_endpoint: str | None = Field(default=None, max_length=2000)
    token_endpoint: str = Field(max_length=2000)
    jwks_uri: str = Field(max_length=2000)
    revocation_endpoint: str = Field(max_length=2000)
    response_types_supported: list[str] = Field(max_length=10)
    grant_types_supported: list[str] = Field(max_length=10)
    token_endpoint_auth_methods_supported: list[str] = Field(max_length=10)
    revocation_endpoint_auth_methods_supported: list[str] = Field(max_length=10)
    scopes_supported: list[str] = Field(max_length=100)
    # RFC 7636 4.3 (in RFC 8414 2): PKCE methods; absent, a client may assume none.
    code_challenge_methods_supported: list[str] | None = Field(default=None, max_length=10)
