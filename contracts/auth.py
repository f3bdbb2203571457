"""Identity wire contracts: scopes, principals and the OAuth2 token response."""

import enum
from typing import Final

from pydantic import BaseModel, Field

TOKEN_PATH: Final = "/v1/oauth/token"
JWKS_PATH: Final = "/.well-known/jwks.json"
# Every Sagabank service accepts tokens for this audience; the issuer is the accounts service.
TOKEN_AUDIENCE: Final = "sagabank"
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
    # The saga's worker (and other internal callers)
    ledger_write = "ledger:write"
    fraud_score = "fraud:score"
    notifications_publish = "notifications:publish"
    transfers_internal = "transfers:internal"


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


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str = Field(max_length=4096)
    token_type: str = "Bearer"
    expires_in: int
    scope: str = Field(max_length=1000)
    refresh_token: str | None = Field(default=None, max_length=512)
