"""The console's settings (environment variables `CONSOLE_*`); only `main.py` reads them."""

import enum
import ipaddress
from typing import Final
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.auth import OPERATOR_SCOPES

CONSOLE_CLIENT_ID_DEFAULT: Final = "sagabank-console"
CALLBACK_PATH: Final = "/auth/callback"
_URL_PATTERN: Final = r"^https?://[^\s]+$"


class CookieSecure(enum.StrEnum):
    """Whether the session cookie carries `Secure`: `auto` does unless the console's own URL
    is plain http on a loopback host (the local stack has no TLS to offer)."""

    auto = "auto"
    always = "always"
    never = "never"


class Settings(BaseSettings):
    """The four services' and the issuer's URLs have local defaults (`sagabank up`'s ports);
    compose and the manifests set each of them."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True)

    # Where browsers reach the console: the redirect URI and the cookie's Secure follow it.
    public_url: str = Field(default="http://127.0.0.1:8005", max_length=500, pattern=_URL_PATTERN)
    accounts_url: str = Field(default="http://127.0.0.1:8001", max_length=500, pattern=_URL_PATTERN)
    transactions_url: str = Field(
        default="http://127.0.0.1:8002", max_length=500, pattern=_URL_PATTERN
    )
    fraud_url: str = Field(default="http://127.0.0.1:8003", max_length=500, pattern=_URL_PATTERN)
    notifications_url: str = Field(
        default="http://127.0.0.1:8004", max_length=500, pattern=_URL_PATTERN
    )
    # The issuer as the browser reaches it (the authorize page) and as the console does (the
    # token, revocation and profile calls): in a cluster the two differ.
    issuer_public_url: str = Field(
        default="http://127.0.0.1:8001", max_length=500, pattern=_URL_PATTERN
    )
    issuer_url: str = Field(default="http://127.0.0.1:8001", max_length=500, pattern=_URL_PATTERN)
    client_id: str = Field(default=CONSOLE_CLIENT_ID_DEFAULT, min_length=1, max_length=64)
    # None: the public URL's /auth/callback, which the issuer must hold exactly.
    redirect_uri: str | None = Field(default=None, max_length=500, pattern=_URL_PATTERN)
    # What the console asks for; the issuer grants what the member's role holds of it.
    scopes: list[str] = Field(
        default_factory=lambda: sorted(str(scope) for scope in OPERATOR_SCOPES), max_length=50
    )
    session_idle_timeout_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    session_lifetime_seconds: int = Field(default=8 * 3600, ge=300, le=7 * 86400)
    # Sessions, and browsers with sign-ins in flight (five each at most), this process keeps
    # at most (each a few KiB): the oldest beyond it are dropped, so a flood of sign-in
    # starts cannot exhaust the memory.
    sessions_max: int = Field(default=10_000, ge=10, le=1_000_000)
    # Sign-ins one address may start (each is kept until used or ten minutes old): well
    # above a person's retries, far below what could push out other people's sign-ins.
    rate_limit_sign_in: str = Field(default="30/minute", max_length=40)
    cookie_secure: CookieSecure = CookieSecure.auto
    # Each call to a service or the issuer gives up after this long.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # The Temporal UI a transfer's page links its workflow to.
    temporal_ui_url: str = Field(
        default="http://127.0.0.1:8233", max_length=500, pattern=_URL_PATTERN
    )
    temporal_namespace: str = Field(default="default", min_length=1, max_length=255)
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    log_json: bool | None = None
    request_body_max_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    metrics_enabled: bool = True
    # Read by `sagabank serve console`, as for the services.
    forwarded_allow_ips: str | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _lifetime_outlasts_idleness(self) -> "Settings":
        if self.session_lifetime_seconds < self.session_idle_timeout_seconds:
            raise ValueError("session_lifetime_seconds must be at least the idle timeout")
        return self

    @property
    def callback_uri(self) -> str:
        """The redirect URI sent to the issuer, and the only one the callback answers on."""
        return self.redirect_uri or f"{self.public_url.rstrip('/')}{CALLBACK_PATH}"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not CookieSecure.auto:
            return self.cookie_secure is CookieSecure.always
        parts = urlsplit(self.public_url)
        return not (parts.scheme == "http" and _is_loopback(parts.hostname or ""))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
