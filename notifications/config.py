from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from contracts.notifications import WEBHOOK_SECRET_GRACE_SECONDS_MAX
from kit.sealing import KeyRing, KeyRingSetting, parse_key_ring
from kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", frozen=True)

    # Dev-only relaxations of the SSRF guard, for a demo receiver on this machine. Off in
    # production: webhooks then go over https to public addresses only.
    webhook_allow_http: bool = False
    webhook_allow_loopback: bool = False
    webhook_endpoints_per_customer_max: int = Field(default=20, ge=1, le=1000)
    # The key ring webhook signing secrets are sealed under at rest (kit.sealing):
    # `id:base64key` entries (32-byte keys), newest first, comma-separated. Required: the
    # service seals every secret it keeps (the launcher supplies a dev key).
    secrets_keys: KeyRingSetting
    # How long a rotated-out secret keeps signing beside the new one.
    webhook_secret_grace_seconds: int = Field(
        default=24 * 3600, ge=0, le=WEBHOOK_SECRET_GRACE_SECONDS_MAX
    )
    # The whole attempt (connect, send, read the excerpt) must end within this.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=30)

    dispatcher_enabled: bool = True
    dispatcher_batch_size: int = Field(default=50, ge=1, le=500)
    dispatcher_concurrency: int = Field(default=8, ge=1, le=64)
    dispatcher_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    dispatcher_lease_seconds: float = Field(default=120.0, ge=1, le=3600)

    # Email goes out only when an SMTP server is configured; without one none is composed.
    smtp_host: str | None = Field(default=None, min_length=1, max_length=253)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = Field(default=None, max_length=200)
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # `sagabank@example.com` or `Sagabank <sagabank@example.com>`; never a line break.
    email_from: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^([^@\s<>]+@[^@\s<>]+|[^<>\r\n]*<[^@\s<>]+@[^@\s<>]+>)$",
    )

    def key_ring(self) -> KeyRing:
        return parse_key_ring(self.secrets_keys.get_secret_value())

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.smtp_host is not None and self.email_from is None:
            raise ValueError("NOTIFICATIONS_EMAIL_FROM is required with NOTIFICATIONS_SMTP_HOST")
        longest_attempt = max(self.webhook_timeout_seconds, self.smtp_timeout_seconds)
        if self.dispatcher_lease_seconds <= longest_attempt:
            raise ValueError(
                "NOTIFICATIONS_DISPATCHER_LEASE_SECONDS must exceed the webhook and SMTP "
                "timeouts, or a slow attempt could be sent twice"
            )
        return self
