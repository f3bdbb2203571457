from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from contracts.auth import TOKEN_ISSUER_DEFAULT, Scope
from kit.sealing import KeyRing, KeyRingSetting, parse_key_ring
from kit.settings import ServiceSettings

# The client ids the token endpoint accepts (they become token subjects and audit actors).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class BootstrapClient(BaseModel):
    """A service or operator client, upserted at startup (`ACCOUNTS_BOOTSTRAP_CLIENTS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    # Stored only as an argon2 hash; SecretStr keeps it out of reprs and logs.
    client_secret: SecretStr = Field(min_length=16, max_length=256)
    kind: Literal["service", "operator"]
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))


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
    access_token_lifetime_seconds: int = Field(default=900, ge=5, le=3600)
    refresh_token_lifetime_seconds: int = Field(default=30 * 24 * 3600, ge=60, le=90 * 24 * 3600)
    # The `iss` of the tokens this service mints (and the issuer it verifies its own against).
    issuer: str = Field(default=TOKEN_ISSUER_DEFAULT, max_length=200)
    # Failed password logins allowed per username and per client address ("limits" notation).
    login_failure_rate: str = Field(default="10/minute", max_length=40)
    # Memory that argon2 may hold at once; each hash takes 64 MiB, so the default runs 4
    # hashes at once and answers 503 beyond. Keep it, plus the process's baseline, under
    # the pod's memory limit (deploy/README.md).
    password_hashing_memory_budget_mib: int = Field(default=256, ge=64, le=64 * 1024)
    # Seals the staff's TOTP secrets at rest (`id:base64key,...`, newest first). Left
    # unset, staff can be neither added nor signed in; everything else works.
    secrets_keys: KeyRingSetting | None = None

    def staff_key_ring(self) -> KeyRing | None:
        """The ring of `secrets_keys`, or None when unset."""
        if self.secrets_keys is None:
            return None
        return parse_key_ring(self.secrets_keys.get_secret_value())
