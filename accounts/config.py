from pathlib import Path
from typing import Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from contracts.auth import TOKEN_ISSUER_DEFAULT, Scope
from kit.sealing import KeyRing, KeyRingSetting, parse_key_ring
from kit.settings import ServiceSettings

# The client ids the token endpoint accepts (they become token subjects and audit actors).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
REDIRECT_URI_LENGTH_MAX: Final = 2000
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class BootstrapClient(BaseModel):
    """A client upserted at startup (`ACCOUNTS_BOOTSTRAP_CLIENTS`): a service or operator
    client with its secret, or a public one (a browser app) with its redirect URIs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    # Stored only as an argon2 hash; SecretStr keeps it out of reprs and logs.
    client_secret: SecretStr | None = Field(default=None, min_length=16, max_length=256)
    kind: Literal["service", "operator", "public"]
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    # Where the authorization endpoint may send a public client's codes: compared exactly.
    redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    # Whom a public client's sign-in page signs in: customers (email and password) or staff
    # (email, password and a TOTP code; their tokens are operator tokens).
    signs_in: Literal["customers", "staff"] = "customers"

    @field_validator("redirect_uris")
    @classmethod
    def _exact_redirect_uris(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            redirect_uri_problem = redirect_uri_refusal(uri)
            if redirect_uri_problem is not None:
                raise ValueError(f"{uri!r}: {redirect_uri_problem}")
        if len(set(uris)) != len(uris):
            raise ValueError("a redirect URI is listed twice")
        return uris

    @model_validator(mode="after")
    def _credentials_fit_the_kind(self) -> Self:
        if self.kind == "public":
            # RFC 6749 2.1: a public client cannot keep a secret, so it is given none.
            if self.client_secret is not None:
                raise ValueError("a public client has no client_secret")
            if not self.redirect_uris:
                raise ValueError("a public client needs its redirect_uris")
        elif self.client_secret is None:
            raise ValueError(f"a {self.kind} client needs its client_secret")
        elif self.redirect_uris:
            # Only the authorization code flow redirects, and only public clients use it.
            raise ValueError(f"a {self.kind} client has no redirect_uris")
        elif self.signs_in != "customers":
            raise ValueError(f"a {self.kind} client signs no one in")
        return self


def redirect_uri_refusal(uri: str) -> str | None:
    """Why `uri` cannot be a registered redirect URI, or None: absolute, no fragment
    (RFC 6749 3.1.2), https or plain http to a loopback address only (RFC 8252 7.3)."""
    if len(uri) > REDIRECT_URI_LENGTH_MAX:
        return "too long"
    parts = urlsplit(uri)
    if parts.fragment or uri.endswith("#"):
        return "a redirect URI has no fragment"
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return None
    if parts.scheme != "https" or not parts.hostname:
        return "an absolute https URI, or http to a loopback address"
    return None


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_", extra="ignore", frozen=True)

    # A batch of 1,000 ledger transfers is about 300 KB of JSON.
    request_body_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # The background task that voids expired holds (they already count for nothing in
    # balances; the sweep makes the stored totals and the journal say so too).
    hold_sweep_enabled: bool = True
    hold_sweep_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    hold_sweep_batch_size: int = Field(default=500, ge=1, le=1000)
    # The periodic ledger invariant check (the one `sagabank ledger check` asks for), in one
    # replica at a time. SagabankLedgerInvariantCheckStale fires after 2 h without a check:
    # keep the interval well under that (docs/decisions/0024-metrics.md has the cost).
    invariant_check_enabled: bool = True
    invariant_check_interval_seconds: float = Field(default=900.0, gt=0, le=3600)

    # --- The token issuer ---------------------------------------------------------------
    # A directory of RSA private keys (`*.pem`); every one is published in the JWKS. Left
    # unset, the service refuses to start: it could neither sign nor verify a token.
    signing_keys_dir: Path | None = None
    # The file stem of the key that signs; may be left out when the directory holds one key.
    signing_key_active: str | None = Field(default=None, max_length=100)
    bootstrap_clients: list[BootstrapClient] = Field(default_factory=list, max_length=50)
    # Public clients (browser pages, native apps) upserted beside them. They hold no secret,
    # so a deployment may name them in plain configuration (Kubernetes' ConfigMap) while
    # the confidential clients stay in its secret store.
    bootstrap_public_clients: list[BootstrapClient] = Field(default_factory=list, max_length=50)
    access_token_lifetime_seconds: int = Field(default=900, ge=5, le=3600)
    refresh_token_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=60, le=90 * 24 * 3600)
    # How long an authorization code may wait for its exchange (RFC 6749 4.1.2: short).
    authorization_code_lifetime_seconds: int = Field(default=60, ge=5, le=600)
    # The `iss` of the tokens this service mints (and the issuer it verifies its own against).
    issuer: str = Field(default=TOKEN_ISSUER_DEFAULT, max_length=200)
    # The password grant (RFC 6749 4.3): customers' sign-in for the local stack and the
    # tests. RFC 9700 2.4 says it must not be used: compose.yaml and deploy/k8s turn it off,
    # and the issuer then answers unsupported_grant_type and advertises it nowhere. On by
    # default so that `make run` and every test app keep it (decision 0039).
    password_grant_enabled: bool = True
    # Failed password logins allowed per username and per client address ("limits" notation).
    login_failure_rate: str = Field(default="10/minute", max_length=40)
    # Memory that argon2 may hold at once; each hash takes 64 MiB, so the default runs 4
    # hashes at once and answers 503 beyond. Keep it, plus the process's baseline, under
    # the pod's memory limit (deploy/README.md).
    password_hashing_memory_budget_mib: int = Field(default=256, ge=64, le=64 * 1024)
    # Seals the staff's TOTP secrets at rest (`id:base64key,...`, newest first). Left
    # unset, staff can be neither added nor signed in; everything else works.
    secrets_keys: KeyRingSetting | None = None

    @model_validator(mode="after")
    def _public_list_and_one_registration_each(self) -> Self:
        confidential = [c.client_id for c in self.bootstrap_public_clients if c.kind != "public"]
        if confidential:
            raise ValueError(
                f"bootstrap_public_clients holds public clients only: {', '.join(confidential)}"
            )
        ids = [client.client_id for client in self.registered_clients()]
        repeated = sorted({client_id for client_id in ids if ids.count(client_id) > 1})
        if repeated:
            raise ValueError(f"a client is registered twice: {', '.join(repeated)}")
        return self

    def registered_clients(self) -> list[BootstrapClient]:
        """Every client the issuer upserts at start: the bootstrap and public lists."""
        return [*self.bootstrap_clients, *self.bootstrap_public_clients]

    def staff_key_ring(self) -> KeyRing | None:
        """The ring of `secrets_keys`, or None when unset."""
        if self.secrets_keys is None:
            return None
        return parse_key_ring(self.secrets_keys.get_secret_value())
