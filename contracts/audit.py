"""Audit trail wire contracts: the same on every service that keeps audit events."""

import enum
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.examples import (
    EXAMPLE_AUDIT_EVENT_ID,
    EXAMPLE_CUSTOMER_ID,
    EXAMPLE_HASH,
    EXAMPLE_REQUEST_ID,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TIME,
)

AUDIT_EVENTS_PATH: Final = "/v1/admin/audit-events"
AUDIT_VERIFY_PATH: Final = "/v1/admin/audit-events/verify"
AUDIT_EXPORT_PATH: Final = "/v1/admin/audit-events/export"
AUDIT_LIMIT_MAX: Final = 500
# The hash a chain starts from (the "previous hash" of the first event).
GENESIS_HASH: Final = "0" * 64
# How an event's hash was made: SHA-256 (events written before chains were keyed), or
# HMAC-SHA256 under the service's chain key. A chain never goes back from keyed to unkeyed.
HASH_VERSION_UNKEYED: Final = 1
HASH_VERSION_KEYED: Final = 2


class ActorType(enum.StrEnum):
    customer = "customer"
    service = "service"
    operator = "operator"
    system = "system"


class AuditEventCreate(BaseModel):
    """One audited fact. `id` is deterministic where the writer may retry (saga steps)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_AUDIT_EVENT_ID,
                    "occurred_at": EXAMPLE_TIME,
                    "actor_id": EXAMPLE_CUSTOMER_ID,
                    "actor_type": "customer",
                    "action": "account.opened",
                    "subject_type": "account",
                    "subject_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "account_ids": [EXAMPLE_SOURCE_ACCOUNT_ID],
                    "request_id": EXAMPLE_REQUEST_ID,
                    "after": {"currency": "EUR", "status": "active"},
                    "outcome": "ok",
                }
            ]
        }
    )

    id: UUID
    occurred_at: datetime
    actor_id: str = Field(max_length=64)
    actor_type: ActorType
    action: str = Field(max_length=64, pattern=r"^[a-z0-9_.:-]+$")
    subject_type: str = Field(max_length=32)
    subject_id: str = Field(max_length=64)
    transfer_id: UUID | None = None
    account_ids: list[str] = Field(default_factory=list, max_length=4)
    workflow_id: str | None = Field(default=None, max_length=128)
    run_id: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    outcome: str = Field(max_length=40)
    # For a compensation: the id of the audit event of the step it undoes.
    compensates: UUID | None = None


class AuditEvent(AuditEventCreate):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_AUDIT_EVENT_ID,
                    "occurred_at": EXAMPLE_TIME,
                    "actor_id": EXAMPLE_CUSTOMER_ID,
                    "actor_type": "customer",
                    "action": "account.opened",
                    "subject_type": "account",
                    "subject_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "transfer_id": None,
                    "account_ids": [EXAMPLE_SOURCE_ACCOUNT_ID],
                    "request_id": EXAMPLE_REQUEST_ID,
                    "after": {"currency": "EUR", "status": "active"},
                    "outcome": "ok",
                    "service": "accounts",
                    "sequence": 1042,
                    "recorded_at": EXAMPLE_TIME,
                    "previous_hash": EXAMPLE_HASH,
                    "hash": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
                    "hash_version": 2,
                }
            ]
        }
    )

    service: str
    sequence: int
    recorded_at: datetime
    previous_hash: str
    hash: str
    hash_version: int = HASH_VERSION_UNKEYED


class AuditCheckpoint(BaseModel):
    """A chain's head as the service saw it at `published_at`, signed with its chain key
    (HMAC-SHA256, base64url): kept outside the service's database, it pins the chain."""

    service: str = Field(max_length=64)
    sequence: int = Field(ge=1)
    hash: str = Field(min_length=64, max_length=64)
    published_at: datetime
    signature: str = Field(max_length=100)


class AuditVerification(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service": "accounts",
                    "events_checked": 1042,
                    "ok": True,
                    "checkpoint_sequence": 1000,
                    "checkpoint_published_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    service: str
    events_checked: int
    ok: bool
    first_broken_event_id: UUID | None = None
    first_broken_sequence: int | None = None
    reason: str | None = None
    # The newest checkpoint the chain was held against (None: none published yet).
    checkpoint_sequence: int | None = None
    checkpoint_published_at: datetime | None = None
    # Events the last checkpoint saw that the database no longer holds (a cut-off tail).
    missing_from_sequence: int | None = None
    missing_to_sequence: int | None = None
