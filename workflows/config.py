"""Settings of the saga worker. Only `worker.main` reads them; the rest receives values."""

import importlib.metadata
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.transfers import TASK_QUEUE
from kit.sealing import KeyRing, KeyRingSetting, parse_key_ring

WORKER_CLIENT_ID_DEFAULT = "sagabank-worker"
# The worker deployment every saga worker belongs to, whatever its build.
DEPLOYMENT_NAME = "sagabank-saga"


def package_version() -> str:
    """The installed sagabank distribution's version: the default build id."""
    return importlib.metadata.version("sagabank")


class Settings(BaseSettings):
    """The four service URLs, the token URL and the client secret have no default: a worker
    that does not know them must not start."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore", frozen=True)

    # Unset, the standard TEMPORAL_* variables and profile decide (kit.temporal_connection),
    # and without those the local dev server: these win over them when set.
    temporal_address: str | None = Field(default=None, min_length=1, max_length=255)
    temporal_namespace: str | None = Field(default=None, min_length=1, max_length=255)
    task_queue: str = Field(default=TASK_QUEUE, min_length=1, max_length=255)

    # The worker deployment version this worker declares to Temporal (its build id shows on
    # every workflow task it completes). With versioning on, Temporal routes a workflow
    # only to workers of the version it is pinned to, or of the deployment's current one
    # (docs/decisions/0042): off by default, so a worker started before the version is made
    # current still gets work (`make run`, compose).
    deployment_name: str = Field(
        default=DEPLOYMENT_NAME, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$"
    )
    build_id: str = Field(
        default_factory=package_version, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.+-]+$"
    )
    versioning_enabled: bool = False
    versioning_behavior: Literal["auto-upgrade", "pinned"] = "auto-upgrade"

    # The key ring every payload the worker hands Temporal is sealed under (kit.payloads),
    # the same as the transactions service's TRANSACTIONS_PAYLOAD_KEYS: newest key first,
    # older keys kept until no running or retained history holds payloads sealed under them.
    payload_keys: KeyRingSetting

    accounts_url: AnyHttpUrl
    transactions_url: AnyHttpUrl
    fraud_url: AnyHttpUrl
    notifications_url: AnyHttpUrl

    # The worker's identity: an OAuth2 client (kind service, the worker scopes) that the
    # accounts service knows; its token goes with every call to the four services.
    auth_token_url: AnyHttpUrl
    auth_client_id: str = Field(
        default=WORKER_CLIENT_ID_DEFAULT, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    auth_client_secret: SecretStr = Field(min_length=1, max_length=256)
    # At start the worker asks for a token: a refusal (wrong id or secret) stops it at once
    # with a clear error. An issuer that does not answer is waited for this long, then the
    # worker starts anyway and its activities retry (accounts may start after the worker).
    auth_check_timeout_seconds: float = Field(default=30.0, ge=0, le=300)

    # Below the activities' 30 s start-to-close timeout, so a slow answer is an HTTP
    # timeout the activity maps to a retryable error, not a lost activity attempt.
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=20)
    activity_concurrency_max: int = Field(default=32, ge=1, le=1000)
    # Per service: more requests wait in the worker instead of crowding one httpx pool.
    http_requests_in_flight_max: int = Field(default=8, ge=1, le=100)
    workflow_task_concurrency_max: int = Field(default=32, ge=1, le=1000)
    # How long a stopping worker lets running activities finish before cancelling them.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=300)

    # The worker's metrics and the Temporal SDK's, on one port of their own (Prometheus text
    # at /metrics, no token): the worker serves no other HTTP.
    metrics_enabled: bool = True
    metrics_port: int = Field(default=9464, ge=1, le=65535)

    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    # None: JSON when stderr is not a terminal, coloured console lines when it is.
    log_json: bool | None = None

    def payload_key_ring(self) -> KeyRing:
        return parse_key_ring(self.payload_keys.get_secret_value())
