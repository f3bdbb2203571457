"""Settings of the local launcher (`sagabank up`): environment variables `SAGABANK_*`."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = int

SERVICES: tuple[str, ...] = ("accounts", "transactions", "fraud", "notifications")

# Dev-only defaults, printed when the bank is ready; set both variables on any shared machine.
OPERATOR_CLIENT_ID_DEFAULT = "operator"
OPERATOR_CLIENT_SECRET_DEFAULT = "sagabank-dev-operator-secret"  # noqa: S105 - documented dev value
WORKER_CLIENT_ID = "sagabank-worker"
# The operator console (`console/`, not one of the four services: it owns no database) and
# its OAuth2 client: public (a browser app keeps no secret), sent back to the console's own
# callback only; the launcher registers the callback of the port it gives the console.
CONSOLE = "console"
CONSOLE_CLIENT_ID = "sagabank-console"
CONSOLE_CALLBACK_PATH = "/auth/callback"


class LauncherSettings(BaseSettings):
    """Where the local bank keeps its state and which ports it listens on.

    `database_url` / `temporal_address` point the launcher at an external PostgreSQL
    server / Temporal frontend instead of starting the embedded ones.
    """

    model_config = SettingsConfigDict(env_prefix="SAGABANK_", extra="ignore", frozen=True)

    state_dir: Path = Path(".sagabank")
    host: str = "127.0.0.1"
    database_url: str | None = Field(default=None, max_length=500)
    postgres_port: Port = Field(default=5433, ge=1, le=65535)
    temporal_address: str | None = Field(default=None, max_length=200)
    temporal_namespace: str = Field(default="default", max_length=100)
    temporal_port: Port = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: Port = Field(default=8233, ge=1, le=65535)
    # The codec endpoint the local Temporal UI decodes payloads through (kit.payloads).
    codec_port: Port = Field(default=8235, ge=1, le=65535)
    # Where the worker serves its metrics and the Temporal SDK's (WORKER_METRICS_PORT).
    worker_metrics_port: Port = Field(default=8236, ge=1, le=65535)
    # The ring the bank's Temporal payloads are sealed under (`id:base64key,...`, newest
    # first): the launcher hands it to transactions, the worker and the codec endpoint, and
    # the CLI's Temporal clients use it. Unset, `sagabank up` generates a dev key once.
    payload_keys: SecretStr | None = None
    accounts_port: Port = Field(default=8001, ge=1, le=65535)
    transactions_port: Port = Field(default=8002, ge=1, le=65535)
    fraud_port: Port = Field(default=8003, ge=1, le=65535)
    notifications_port: Port = Field(default=8004, ge=1, le=65535)
    console_port: Port = Field(default=8005, ge=1, le=65535)
    ready_timeout_seconds: float = Field(default=120.0, gt=0, le=900)
    stop_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    log_json: bool | None = None
    # The operator client the local bank registers with its token issuer (OAuth2
    # client_credentials, the operator scopes): `sagabank token --operator` uses it.
    operator_client_id: str = Field(
        default=OPERATOR_CLIENT_ID_DEFAULT,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
    )
    operator_client_secret: SecretStr = Field(
        default=SecretStr(OPERATOR_CLIENT_SECRET_DEFAULT), min_length=16, max_length=256
    )

    def service_port(self, service: str) -> int:
        assert service in SERVICES, f"unknown service {service!r}"
        port: int = getattr(self, f"{service}_port")
        return port

    def service_url(self, service: str) -> str:
        return f"http://{self.host}:{self.service_port(service)}"

    @property
    def console_url(self) -> str:
        return f"http://{self.host}:{self.console_port}"

    @property
    def console_redirect_uri(self) -> str:
        return f"{self.console_url}{CONSOLE_CALLBACK_PATH}"

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"{self.host}:{self.temporal_port}"

    @property
    def temporal_ui_url(self) -> str | None:
        return f"http://localhost:{self.temporal_ui_port}" if self.embedded_temporal else None

    @property
    def codec_url(self) -> str:
        return f"http://{self.host}:{self.codec_port}"

    def postgres_server_url(self) -> str:
        return (
            self.database_url or f"postgresql://postgres@{self.host}:{self.postgres_port}/postgres"
        )
