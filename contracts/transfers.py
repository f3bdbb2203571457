"""Transfers wire contracts: the public transfers API, the saga's input and its projection."""

import enum
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.accounts import AccountsProblem
from contracts.common import Identifier, ShortText, StrictModel
from contracts.examples import (
    EXAMPLE_LATER_TIME,
    EXAMPLE_LEDGER_TRANSFER_ID,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
    example_of,
)
from contracts.fraud import FraudDecision, ScoreReason
from contracts.money import AmountMinor, CurrencyCode
from contracts.problem import Problem

TRANSFERS_PATH = "/v1/transfers"
# The saga reports each step here (transactions service, internal): POST a StepRecord.
TRANSFER_STEPS_PATH = "/v1/internal/transfers/{transfer_id}/steps"
# Several steps in one report (a StepRecordBatch): the saga sends the steps it took
# between two waits together, one request and one database transaction for all of them.
TRANSFER_STEP_BATCH_PATH = "/v1/internal/transfers/{transfer_id}/steps/batch"
# Steps one saga can take; a batch never holds more.
STEP_BATCH_SIZE_MAX: Final = 20
TASK_QUEUE: Final = "sagabank-transfers"
WORKFLOW_NAME: Final = "TransferWorkflow"
SIGNAL_REVIEW_DECISION: Final = "review_decision"
SIGNAL_CANCEL: Final = "cancel"
# The update behind `POST /v1/transfers/{id}/cancel`: unlike the signal, its validator
# refuses once posting has begun, so the caller learns the answer (409) synchronously.
UPDATE_CANCEL: Final = "request_cancel"
QUERY_STATUS: Final = "status"
REVIEW_TIMEOUT_SECONDS_DEFAULT: Final = 24 * 3600
# Reversals one transfer may have (contracts.reversals): partial ones add up to at most the
# original, and this bounds their list.
TRANSFER_REVERSALS_MAX: Final = 100

# Namespace for ids derived from a transfer id and a step, so every retry of a step
# carries the same id and every service can deduplicate it.
STEP_ID_NAMESPACE: Final = uuid.UUID("8a4c1d2e-5b6f-4f7a-9c3d-2e1f0a9b8c7d")


def workflow_id(transfer_id: UUID) -> str:
    """The Temporal workflow id of a transfer: readable in the web UI, unique per transfer."""
    return f"transfer-{transfer_id}"


def step_id(transfer_id: UUID, step: str) -> UUID:
    """The deterministic id of one step of one transfer (e.g. its hold or its posting)."""
    assert step, "a step needs a name"
    return uuid.uuid5(STEP_ID_NAMESPACE, f"{transfer_id}:{step}")


# Custom search attributes registered on the Temporal namespace, with their types.
SEARCH_ATTRIBUTES: Final[dict[str, str]] = {
    "TransferStatus": "Keyword",
    "SourceAccountId": "Keyword",
    "TargetAccountId": "Keyword",
    "AmountMinor": "Int",
    "Currency": "Keyword",
    "FraudDecision": "Keyword",
    # A reversal's workflow carries the transfer it reverses: the UI lists its reversals.
    "OriginalTransferId": "Keyword",
}


class TransactionsProblem(enum.StrEnum):
    """The transactions service's own problem slugs (the generic ones: `CommonProblem`)."""

    idempotency_key_reused = "idempotency-key-reused"
    idempotency_key_in_flight = "idempotency-key-in-flight"
    # The same refusal as the ledger's: one type, one meaning, whichever service answers.
    same_account = AccountsProblem.same_account.value
    transfer_not_found = "transfer-not-found"
    transfer_not_cancellable = "transfer-not-cancellable"
    transfer_not_in_review = "transfer-not-in-review"
    workflow_service_unavailable = "workflow-service-unavailable"
    invalid_prefer_wait = "invalid-prefer-wait"
    callback_signature_invalid = "callback-signature-invalid"
    callback_timestamp_invalid = "callback-timestamp-invalid"
    callback_client_exists = "callback-client-exists"
    callbacks_not_configured = "callbacks-not-configured"
    # The accounts service's own answer, passed on unchanged.
    account_not_found = AccountsProblem.account_not_found.value
    accounts_unavailable = "accounts-unavailable"
    # Reversals (contracts.reversals).
    reversal_exceeds_transfer = "reversal-exceeds-transfer"
    transfer_not_reversible = "transfer-not-reversible"
    reversal_not_found = "reversal-not-found"
    # Standing orders (contracts.standing_orders).
    standing_order_interval_invalid = "standing-order-interval-invalid"
    standing_order_interval_too_short = "standing-order-interval-too-short"
    standing_order_schedule_invalid = "standing-order-schedule-invalid"
    standing_order_not_found = "standing-order-not-found"
    standing_order_cancelled = "standing-order-cancelled"
    execute_at_too_far = "execute-at-too-far"


class TransferStatus(enum.StrEnum):
    # Future-dated (`execute_at`): its saga has not started yet.
    scheduled = "scheduled"
    pending = "pending"
    in_review = "in_review"
    completed = "completed"
    rejected = "rejected"
    declined = "declined"
    expired = "expired"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (
            TransferStatus.scheduled,
            TransferStatus.pending,
            TransferStatus.in_review,
        )


Metadata = Annotated[dict[Identifier, ShortText], Field(max_length=20)]


class TransferCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "description": "Rent December",
                    "metadata": {"reference": "RENT-2026-12"},
                }
            ]
        }
    )

    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode
    description: ShortText | None = None
    metadata: Metadata = Field(default_factory=dict)
    # A future-dated transfer: its saga starts then (status `scheduled` until it does);
    # a time already past starts it at once.
    execute_at: AwareDatetime | None = None


def initial_status(transfer: TransferCreate) -> TransferStatus:
    """A new transfer's status: `scheduled` when future-dated, else `pending`."""
    return TransferStatus.pending if transfer.execute_at is None else TransferStatus.scheduled


class TransferStep(BaseModel):
    name: str = Field(max_length=40)
    outcome: str = Field(max_length=40)
    occurred_at: datetime
    detail: str | None = Field(default=None, max_length=500)


class FraudAssessment(BaseModel):
    score: int
    decision: FraudDecision
    reasons: list[ScoreReason]


class Transfer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_TRANSFER_ID,
                    "workflow_id": "transfer-" + EXAMPLE_TRANSFER_ID,
                    "status": "completed",
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "description": "Rent December",
                    "metadata": {"reference": "RENT-2026-12"},
                    "steps": [
                        {"name": "validate", "outcome": "ok", "occurred_at": EXAMPLE_TIME},
                        {"name": "hold", "outcome": "ok", "occurred_at": EXAMPLE_TIME},
                        {"name": "score", "outcome": "approve", "occurred_at": EXAMPLE_TIME},
                        {"name": "post", "outcome": "ok", "occurred_at": EXAMPLE_LATER_TIME},
                    ],
                    "fraud": {
                        "score": 300,
                        "decision": "approve",
                        "reasons": [
                            {
                                "code": "large_amount",
                                "text": "The amount is above 1,000.00 EUR.",
                                "points": 300,
                            }
                        ],
                    },
                    "hold_id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "posting_id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7",
                    "failure_reason": None,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_LATER_TIME,
                    "reversal_of": None,
                    "reversed_minor": 0,
                    "reversal_ids": [],
                }
            ]
        }
    )

    id: UUID
    workflow_id: str
    status: TransferStatus
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    steps: list[TransferStep]
    fraud: FraudAssessment | None
    hold_id: UUID | None
    posting_id: UUID | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    # A reversal (a transfer from the payee back to the payer) names the transfer it
    # reverses; an original carries what its reversals moved back, or are moving.
    reversal_of: UUID | None = None
    reversed_minor: int = 0
    reversal_ids: list[UUID] = Field(default_factory=list, max_length=TRANSFER_REVERSALS_MAX)
    execute_at: datetime | None = None


class StepRecord(StrictModel):
    """What the saga reports after each step; applied only if `version` is newer.

    Idempotent on (transfer id, step): a retried report changes nothing, and a late
    report with an older version never moves the transfer's status backwards.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step": "hold",
                    "outcome": "ok",
                    "status": "pending",
                    "version": 2,
                    "occurred_at": EXAMPLE_TIME,
                    "hold_id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "workflow_id": "transfer-" + EXAMPLE_TRANSFER_ID,
                    "run_id": "7b0e1d2c-3f4a-4b5c-8d6e-9f0a1b2c3d4e",
                }
            ]
        }
    )

    step: str = Field(min_length=1, max_length=40)
    outcome: str = Field(min_length=1, max_length=40)
    status: TransferStatus
    version: int = Field(ge=1, le=1000)
    occurred_at: datetime
    detail: str | None = Field(default=None, max_length=500)
    fraud: FraudAssessment | None = None
    hold_id: UUID | None = None
    posting_id: UUID | None = None
    failure_reason: str | None = Field(default=None, max_length=500)
    # The Temporal execution that took the step, so the audit trail and the Temporal UI
    # point at each other. The worker fills them from the activity's context.
    workflow_id: str | None = Field(default=None, max_length=128)
    run_id: str | None = Field(default=None, max_length=64)
    # For a compensation (`void`): the step it undoes.
    compensates_step: str | None = Field(default=None, max_length=40)


class StepRecordBatch(StrictModel):
    """Consecutive steps of one transfer, oldest first (strictly increasing versions).

    Applied in one transaction, each record exactly as if it had been reported alone.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "step": "validate",
                            "outcome": "ok",
                            "status": "pending",
                            "version": 1,
                            "occurred_at": EXAMPLE_TIME,
                        },
                        {
                            "step": "hold",
                            "outcome": "ok",
                            "status": "pending",
                            "version": 2,
                            "occurred_at": EXAMPLE_TIME,
                            "hold_id": EXAMPLE_LEDGER_TRANSFER_ID,
                        },
                    ]
                }
            ]
        }
    )

    records: list[StepRecord] = Field(min_length=1, max_length=STEP_BATCH_SIZE_MAX)


class TransferWorkflowInput(BaseModel):
    """The saga's one input. Everything it needs travels here; it reads no database."""

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    description: str | None = None
    review_timeout_seconds: int = REVIEW_TIMEOUT_SECONDS_DEFAULT
    # The customer who asked (the token's subject); events about the transfer go to them.
    source_customer_id: str | None = None
    # How long the ledger keeps the saga's hold when nobody posts or voids it (the review
    # timeout plus a grace period): a workflow terminated from the Temporal UI, or a void
    # that never arrives, frees the funds when it runs out. None only in transfers started
    # before holds had a deadline.
    hold_timeout_seconds: int | None = Field(default=None, gt=0)
    # A saga whose workflow started after this moves no money: it ends the transfer
    # `rejected` (`not-started`). A transfer whose start failed (Temporal away) is started
    # late by the reconciler; past this, the customer has long been told it failed.
    start_deadline: datetime | None = None


class TransferWorkflowResult(BaseModel):
    transfer_id: UUID
    status: TransferStatus
    failure_reason: str | None = None


class ReviewRequest(StrictModel):
    """A reviewer's verdict, as `POST /v1/admin/transfers/{id}/review` takes it. The
    reviewer is the token's subject: a body naming one (`reviewer_id`) is refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"decision": "approve", "note": "Customer confirmed by phone"}]
        }
    )

    decision: Literal["approve", "reject"]
    note: ShortText | None = None


class ReviewDecision(StrictModel):
    """A reviewer's verdict on a transfer in review (signal `review_decision`); the
    transactions service names the reviewer, never the caller's body."""

    decision: Literal["approve", "reject"]
    reviewer_id: Identifier
    note: ShortText | None = None


class CancelRequest(StrictModel):
    """A customer's request to cancel (signal `cancel`); honoured only before posting."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Paid the wrong account"}]}
    )

    reason: ShortText | None = None


class CancelResult(BaseModel):
    """The workflow's answer to a cancel update: accepted, and the status at that moment."""

    accepted: bool
    status: TransferStatus


# --- Prefer: wait -----------------------------------------------------------------------

# `Prefer: wait=N` on POST /v1/transfers answers with the final state when the transfer
# finishes within N seconds (RFC 7240); a larger N is refused rather than silently cut.
PREFER_WAIT_SECONDS_MAX: Final = 30


# --- batch ------------------------------------------------------------------------------

TRANSFERS_BATCH_PATH: Final = "/v1/transfers/batch"
TRANSFER_BATCH_SIZE_MAX: Final = 100

# An Idempotency-Key (header, or a batch item's field): 1 to 255 printable ASCII characters.
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
IDEMPOTENCY_KEY_PATTERN: Final = r"^[\x20-\x7E]+$"
IdempotencyKeyText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        examples=["rent-2026-11"],
    ),
]


class TransferBatchItem(TransferCreate):
    """One transfer of a batch, with the Idempotency-Key it would carry as a single POST:
    the same key and body in a batch and in a single POST are the same request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "description": "Rent December",
                    "metadata": {"reference": "RENT-2026-12"},
                    "idempotency_key": "rent-2026-12",
                }
            ]
        }
    )

    idempotency_key: IdempotencyKeyText

    def to_create(self) -> TransferCreate:
        return TransferCreate.model_validate(self.model_dump(exclude={"idempotency_key"}))


class TransferBatchCreate(StrictModel):
    """Up to 100 transfers. Each item is validated on its own, so one malformed item is
    answered with its own problem and does not sink the others."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [example_of(TransferBatchItem)]}]}
    )

    items: list[object] = Field(
        min_length=1,
        max_length=TRANSFER_BATCH_SIZE_MAX,
        json_schema_extra={"items": TransferBatchItem.model_json_schema()},
    )


class TransferBatchResult(BaseModel):
    """The answer to one item, in the item's position: what a single POST would answer."""

    index: int = Field(ge=0, lt=TRANSFER_BATCH_SIZE_MAX)
    idempotency_key: str | None = Field(max_length=255)
    status: int = Field(ge=200, le=599)
    replayed: bool
    transfer: Transfer | None
    problem: Problem | None


class TransferBatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "index": 0,
                            "idempotency_key": "rent-2026-12",
                            "status": 201,
                            "replayed": False,
                            "transfer": example_of(Transfer),
                            "problem": None,
                        }
                    ]
                }
            ]
        }
    )

    results: list[TransferBatchResult] = Field(max_length=TRANSFER_BATCH_SIZE_MAX)


# --- inbound confirmation callbacks (Standard Webhooks) ---------------------------------

CALLBACK_CONFIRMATIONS_PATH: Final = "/v1/callbacks/confirmations"
CALLBACK_CLIENTS_PATH: Final = "/v1/admin/callback-clients"
# Names the registered callback client whose secret signed the request. Not signed
# itself: a wrong id simply selects a secret the signature does not match.
CALLBACK_CLIENT_HEADER: Final = "Callback-Client-Id"
# Standard Webhooks: a message more than 5 minutes away from our clock is refused.
CALLBACK_TIMESTAMP_TOLERANCE_SECONDS: Final = 300

CallbackClientName = Annotated[
    str, Field(min_length=1, max_length=48, pattern=r"^[a-z0-9][a-z0-9_.-]*$", examples=["rail-x"])
]
# A callback client decides only transfers out of the accounts it registered with; the
# prefix, if it registered one, narrows that to transfers whose metadata `reference`
# starts with it. The creator of a transfer writes its metadata, so a prefix alone would
# let any customer put a transfer in a client's reach: it never stands without accounts.
CALLBACK_CLIENT_ACCOUNTS_MAX: Final = 100
TRANSFER_REFERENCE_METADATA_KEY: Final = "reference"
CallbackReferencePrefix = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7E]+$", examples=["RX-"])
]


class CallbackClientCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "rail-x",
                    "description": "Confirmations from the instant payment rail",
                    "account_ids": [EXAMPLE_SOURCE_ACCOUNT_ID],
                    "reference_prefix": "RX-",
                }
            ]
        }
    )

    name: CallbackClientName
    description: ShortText | None = None
    account_ids: list[UUID] = Field(
        min_length=1,
        max_length=CALLBACK_CLIENT_ACCOUNTS_MAX,
        description="The client decides only transfers whose source is one of these accounts",
    )
    reference_prefix: CallbackReferencePrefix | None = Field(
        default=None,
        description=(
            f"If set, only transfers whose metadata `{TRANSFER_REFERENCE_METADATA_KEY}` "
            "starts with it (case-sensitive), among those out of `account_ids`"
        ),
    )


class CallbackClient(BaseModel):
    id: UUID
    name: str
    description: str | None
    account_ids: list[UUID] = Field(max_length=CALLBACK_CLIENT_ACCOUNTS_MAX)
    reference_prefix: str | None
    created_at: datetime


class CallbackClientCreated(CallbackClient):
    """Returned once, at registration: the only time the signing secret is shown."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5f6a7b8c-9d0e-4f1a-b2c3-d4e5f6a7b8c9",
                    "name": "rail-x",
                    "description": "Confirmations from the instant payment rail",
                    "account_ids": [EXAMPLE_SOURCE_ACCOUNT_ID],
                    "reference_prefix": "RX-",
                    "created_at": EXAMPLE_TIME,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/VG7DnDJWCc=",
                }
            ]
        }
    )

    secret: str = Field(description="Standard Webhooks secret, `whsec_` + base64 of 32 bytes")


class ConfirmationCallback(StrictModel):
    """An external system's verdict on a transfer in review (signed per Standard Webhooks)."""

    transfer_id: UUID
    decision: Literal["approve", "reject"]
    external_reference: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7E]+$")
    ]
    note: Annotated[str, Field(max_length=60)] | None = None


class ConfirmationReceipt(BaseModel):
    """The answer to a confirmation: the same body again for a replayed `webhook-id`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "webhook_id": "msg_2Lh5yQ9dJ0wR3mZ8",
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "decision": "approve",
                    "external_reference": "RX-20261206-000417",
                    "transfer_status": "in_review",
                }
            ]
        }
    )

    webhook_id: str
    transfer_id: UUID
    decision: Literal["approve", "reject"]
    external_reference: str
    # The transfer's status when the decision was handed to its saga (still in review).
    transfer_status: TransferStatus
