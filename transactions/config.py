from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from contracts.accounts import PENDING_TIMEOUT_SECONDS_MAX
from contracts.transfers import REVIEW_TIMEOUT_SECONDS_DEFAULT, TASK_QUEUE
from kit.sealing import (
    KeyRing,
    KeyRingSetting,
    SealingKey,
    decode_key,
    parse_key_ring,
    with_legacy_key,
)
from kit.settings import ServiceSettings

CALLBACK_SECRETS_KEY_BYTES = 32
# The id of the single key of TRANSACTIONS_CALLBACK_SECRETS_KEY in the key ring.
LEGACY_KEY_ID = "legacy"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSACTIONS_", extra="ignore", frozen=True)

    # A batch of 100 transfers with descriptions and metadata outgrows the kit's 64 KiB.
    request_body_max_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Unset, the standard TEMPORAL_* variables and profile decide (kit.temporal_connection),
    # and without those the local dev server: these win over them when set.
    temporal_address: str | None = Field(default=None, min_length=1, max_length=255)
    temporal_namespace: str | None = Field(default=None, min_length=1, max_length=255)
    task_queue: str = Field(default=TASK_QUEUE, min_length=1, max_length=255)
    # How long a transfer in review waits for a reviewer before it expires (30 days at most).
    review_timeout_seconds: int = Field(default=REVIEW_TIMEOUT_SECONDS_DEFAULT, gt=0, le=30 * 86400)
    # The saga's hold expires this long after the review timeout would have ended the
    # review (counted from the hold): a workflow terminated from the Temporal UI, or a void
    # that never arrives, then frees the customer's funds. The grace covers the steps
    # between the hold and the review's start, and a post retried while accounts is away.
    hold_grace_seconds: int = Field(default=3600, ge=1, le=24 * 3600)
    # A transfer whose saga could not be started (Temporal away) is started late by the
    # reconciler up to this long after it was requested; a saga first started after that
    # ends the transfer `rejected` (`not-started`) without moving money.
    start_deadline_seconds: int = Field(default=900, ge=1, le=7 * 86400)
    # The reconciler looks for transfers without a saga this often (one replica at a time),
    # taking those whose start is this overdue (a create in progress finishes well before).
    reconcile_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    reconcile_after_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Every call to Temporal (connect, start, signal) gives up after this long.
    temporal_rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # How long a cancel waits for the saga to accept or refuse it (the update's round trip
    # through a worker); after it the caller gets a 503 and may retry (same update id).
    cancel_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Idempotency keys are kept at least 24 hours (the floor), 30 days at most.
    idempotency_key_ttl_seconds: int = Field(default=24 * 3600, ge=24 * 3600, le=30 * 86400)
    # A duplicate of a request still in flight waits this long for its answer, then 409.
    idempotency_in_flight_wait_seconds: float = Field(default=5.0, ge=0, le=30)
    # Expired keys are purged in the background this often, in bounded batches.
    idempotency_purge_interval_seconds: float = Field(default=300.0, gt=0, le=86400)
    # Waiters (Prefer: wait, duplicate keys) wake on PostgreSQL NOTIFY; they also re-read
    # this often, so a lost notification or a dropped listener costs latency, not answers.
    wait_poll_interval_seconds: float = Field(default=1.0, gt=0, le=30)
    # The key ring callback clients' signing secrets are sealed under at rest (kit.sealing):
    # `id:base64key` entries (32-byte keys), newest first, comma-separated. Without it (and
    # without the older single key below) the callback endpoints answer 503; the launcher
    # supplies a dev key.
    secrets_keys: KeyRingSetting | None = None
    # Deprecated, still honoured: base64 of one 32-byte key, the only key before rings. It
    # joins the ring as its oldest key, id `legacy` (unless the ring holds it already).
    callback_secrets_key: SecretStr | None = None
    # The key ring the saga's Temporal payloads are sealed under (kit.payloads), the same
    # as the worker's WORKER_PAYLOAD_KEYS; required: payloads never go to Temporal in clear.
    payload_keys: KeyRingSetting
    # The accounts service (e.g. http://127.0.0.1:8001): a transfer starts only once it
    # confirms that the caller owns the source account. Without it every transfer request
    # answers 503 (the check is never skipped); the launcher supplies it.
    accounts_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$")
    # One ownership check gives up after this long (then 503, and the key is freed).
    accounts_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # Where a trace can be seen, `{trace_id}` standing for its W3C id (e.g. Jaeger's
    # http://localhost:16686/trace/{trace_id}): each transfer workflow's details in the
    # Temporal UI link there. Unset, the details give the bare trace id.
    trace_url_template: str | None = Field(
        default=None, max_length=500, pattern=r"^https?://[^\s]*\{trace_id\}[^\s]*$"
    )

    # How far ahead a future-dated transfer (`execute_at`) may be.
    execute_at_ahead_max_seconds: int = Field(default=90 * 86400, ge=60, le=366 * 86400)
    # The shortest interval a standing order may have; tests set a few seconds.
    standing_order_min_interval_seconds: int = Field(default=86400, ge=1, le=366 * 86400)

    @model_validator(mode="after")
    def _hold_outlives_the_review(self) -> "Settings":
        hold_timeout_seconds = self.review_timeout_seconds + self.hold_grace_seconds
        if hold_timeout_seconds > PENDING_TIMEOUT_SECONDS_MAX:
            raise ValueError(
                "review_timeout_seconds + hold_grace_seconds must not exceed the ledger's "
                f"longest hold, {PENDING_TIMEOUT_SECONDS_MAX} seconds"
            )
        return self

    @property
    def hold_timeout_seconds(self) -> int:
        """How long the saga's hold lasts unless posted or voided (review + grace)."""
        return self.review_timeout_seconds + self.hold_grace_seconds

    @field_validator("callback_secrets_key")
    @classmethod
    def _is_a_32_byte_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # SealingKey refuses any size but the ring's (32 bytes).
            SealingKey(LEGACY_KEY_ID, legacy_key(value))
        return value

    def payload_key_ring(self) -> KeyRing:
        return parse_key_ring(self.payload_keys.get_secret_value())

    def key_ring(self) -> KeyRing | None:
        """The ring of `secrets_keys`, the single `callback_secrets_key` as its oldest key."""
        ring = (
            None
            if self.secrets_keys is None
            else parse_key_ring(self.secrets_keys.get_secret_value())
        )
        legacy = (
            None if self.callback_secrets_key is None else legacy_key(self.callback_secrets_key)
        )
        return with_legacy_key(ring, legacy, key_id=LEGACY_KEY_ID)


def legacy_key(value: SecretStr) -> bytes:
    return decode_key(value.get_secret_value(), name="callback_secrets_key")
