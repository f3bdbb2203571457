"""Settings every service has. Only a service's `main.py` reads them; the rest gets values."""

from pathlib import Path
from urllib.parse import quote

from pydantic import Field, PostgresDsn, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.auth import JWKS_PATH, TOKEN_ISSUER_DEFAULT, audience_of_service
from kit.audit_checkpoints import decode_chain_key


class ServiceSettings(BaseSettings):
    """Subclass per service with its own `env_prefix` (e.g. `ACCOUNTS_`).

    `database_url` has no default: a service that does not know its database must not start;
    nor has `audit_chain_key`: a service must not write an audit trail its database could
    rewrite unseen.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: PostgresDsn
    database_pool_size: int = Field(default=10, ge=1, le=100)
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    # None: JSON when stderr is not a terminal, coloured console lines when it is.
    log_json: bool | None = None
    request_body_max_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Where this service fetches the token issuer's public keys. None: no token verifies
    # (every protected route answers 401), never "no auth".
    auth_jwks_url: str | None = Field(default=None, max_length=500)
    # The issuer's keys are refreshed in the background after the TTL; the interval is the
    # least time between two fetches (a token naming an unknown key, or retrying an issuer
    # that is away), hence also how soon a returning issuer's new key is picked up.
    auth_jwks_ttl_seconds: float = Field(default=300.0, ge=1.0, le=86400.0)
    auth_jwks_refetch_interval_seconds: float = Field(default=5.0, ge=0.5, le=300.0)
    auth_issuer: str = Field(default=TOKEN_ISSUER_DEFAULT, max_length=200)
    # The issuer's base URL as browsers and integrators reach it, which this service's OpenAPI
    # names for its token and sign-in endpoints. None: where `auth_jwks_url` points, when
    # that ends in the JWKS path (an internal address in compose or Kubernetes: set this).
    auth_issuer_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    # The `aud` a token must name for this service to accept it. None: the service's own,
    # `sagabank:<service>` (contracts.auth.ServiceAudience), which the issuer puts in the
    # tokens whose scopes this service checks, and in no other.
    auth_audience: str | None = Field(default=None, min_length=1, max_length=200)
    # Browser origins allowed to call this service (CORS). Empty: no cross-origin calls.
    cors_allow_origins: list[str] = Field(default_factory=list, max_length=50)
    # Per-principal rates for money-moving requests and for the token endpoint, in the
    # `limits` notation ("60/minute"); see kit.ratelimit for what "per principal" means.
    rate_limit_money: str = Field(default="120/minute", max_length=40)
    rate_limit_token: str = Field(default="30/minute", max_length=40)
    # Keys the audit chain (HMAC-SHA256): base64 of at least 32 random bytes, from the
    # secret store; the database never holds it (docs/decisions/0016).
    audit_chain_key: SecretStr
    # Where signed checkpoints of the chain's head are written, outside the database (a
    # volume every replica mounts). None: no checkpoint, so a cut-off tail goes unseen.
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_interval_seconds: float = Field(default=60.0, gt=0, le=3600)

    # GET /metrics (Prometheus text, no token). With a port, served there instead of on the
    # service's port (started and stopped with the app), so that only the scraper reaches it.
    metrics_enabled: bool = True
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("audit_chain_key")
    @classmethod
    def _chain_key_decodes(cls, value: SecretStr) -> SecretStr:
        decode_chain_key(value.get_secret_value())
        return value

    def audit_chain_key_bytes(self) -> bytes:
        return decode_chain_key(self.audit_chain_key.get_secret_value())

    # Where rate limit counters live, as a `limits` storage URI: `memory://` counts in this
    # process only; `redis://host:6379` shares them across replicas (deploy/README.md).
    rate_limit_storage_uri: str = Field(default="memory://", min_length=1, max_length=500)
    # Proxies trusted to name the client (X-Forwarded-For, X-Forwarded-Proto): addresses or
    # networks, comma-separated, `*` for any. Read by `sagabank serve`, which hands it to
    # uvicorn; unset, the peer's address is the client's and forwarded headers are ignored.
    forwarded_allow_ips: str | None = Field(default=None, min_length=1, max_length=1000)

    def issuer_url(self) -> str | None:
        """The issuer's public base URL: `auth_issuer_url`, else `auth_jwks_url`'s, else None."""
        if self.auth_issuer_url is not None:
            return self.auth_issuer_url.rstrip("/")
        if self.auth_jwks_url is not None and self.auth_jwks_url.endswith(JWKS_PATH):
            return self.auth_jwks_url.removesuffix(JWKS_PATH)
        return None

    def token_audience(self, service: str) -> str:
        """The audience this service's bearer tokens must name."""
        return self.auth_audience or audience_of_service(service)

    def async_database_url(self) -> str:
        """The URL with the asyncpg driver, whatever scheme the operator wrote."""
        return to_asyncpg_url(str(self.database_url))

    def asyncpg_dsn(self) -> str:
        """The URL as asyncpg's own connections take it (no SQLAlchemy driver suffix)."""
        return to_asyncpg_dsn(str(self.database_url))


def to_asyncpg_url(url: str) -> str:
    """SQLAlchemy's spelling for the asyncpg driver: `postgresql+asyncpg://...`."""
    scheme, separator, rest = url.partition("://")
    assert separator, f"not a URL: {url!r}"
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}; use postgresql://")


def to_asyncpg_dsn(url: str) -> str:
    """asyncpg's (and libpq's) spelling: `postgresql://...`, whatever scheme `url` has."""
    return "postgresql://" + to_asyncpg_url(url).partition("://")[2]


def with_database(server_url: str, database: str) -> str:
    """`server_url` (any spelling) naming `database` instead of its own, query kept."""
    base, _, query = server_url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


def with_user(server_url: str, user: str, password: str | None = None) -> str:
    """`server_url` connecting as `user` (with `password`, percent-encoded), all else kept."""
    scheme, _, rest = server_url.partition("://")
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    credentials = quote(user, safe="")
    if password is not None:
        credentials += ":" + quote(password, safe="")
    return f"{scheme}://{credentials}@{host}{slash}{path}"
