"""Tables of the transactions database."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from contracts.transfers import CALLBACK_CLIENT_ACCOUNTS_MAX
from kit.audit import audit_table
from kit.transfer_columns import TransferTermsColumns


class Base(DeclarativeBase):
    pass


class TransferRow(TransferTermsColumns, Base):
    """A transfer request and its status projection, written by the saga's step reports."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_transfers_amount_positive"),
        CheckConstraint(
            "source_account_id <> target_account_id", name="ck_transfers_distinct_accounts"
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_transfers_currency_code"),
        CheckConstraint("version >= 0", name="ck_transfers_version_not_negative"),
        CheckConstraint(
            "status IN ('scheduled', 'pending', 'in_review', 'completed', 'rejected',"
            " 'declined', 'expired', 'cancelled')",
            name="ck_transfers_status_known",
        ),
        Index("ix_transfers_created_at_id", "created_at", "id"),
        Index("ix_transfers_status_created_at_id", "status", "created_at", "id"),
        Index("ix_transfers_source_created_at_id", "source_account_id", "created_at", "id"),
        Index("ix_transfers_target_created_at_id", "target_account_id", "created_at", "id"),
        # A customer lists only their own transfers, newest first.
        Index("ix_transfers_customer_created_at_id", "customer_id", "created_at", "id"),
        # The reconciler's look-up of transfers whose saga is not known to run.
        Index(
            "ix_transfers_saga_unstarted_created_at",
            "created_at",
            postgresql_where=text("saga_started_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    description: Mapped[str | None] = mapped_column(String(140))
    # `metadata` is reserved on declarative classes; the column keeps the wire name.
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    status: Mapped[str] = mapped_column(String(20))
    # The version of the last step report applied; reports with a lower one are stale.
    version: Mapped[int] = mapped_column(Integer)
    fraud: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    hold_id: Mapped[uuid.UUID | None]
    posting_id: Mapped[uuid.UUID | None]
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # The customer whose token created the transfer (its owner); None when the creator was
    # not a customer, or for transfers created before ownership was recorded.
    customer_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the saga was known to be started (its start answered); None until then, which is
    # what the reconciler looks for: a transfer whose start failed and was never retried.
    saga_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A reversal (payee back to payer) names the transfer it reverses, and why.
    reversal_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transfers.id", name="fk_transfers_reversal_of"),
        index=True,
    )
    reversal_reason: Mapped[str | None] = mapped_column(String(140))
    # A future-dated transfer's time: its saga's start is delayed until then.
    execute_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TransferStepRow(Base):
    """One step the saga reported: the audit trail. Written once per (transfer, step)."""

    __tablename__ = "transfer_steps"
    __table_args__ = (CheckConstraint("version >= 1", name="ck_transfer_steps_version_positive"),)

    transfer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transfers.id", name="fk_transfer_steps_transfer_id"), primary_key=True
    )
    step: Mapped[str] = mapped_column(String(40), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(String(500))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class IdempotencyKeyRow(Base):
    """A caller's Idempotency-Key: claimed while in flight, then the stored response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('in_flight', 'completed')", name="ck_idempotency_keys_state"),
        CheckConstraint(
            "state <> 'completed' OR (response_status IS NOT NULL AND response_body IS NOT NULL)",
            name="ck_idempotency_keys_completed_has_response",
        ),
        # The purge deletes the oldest expired keys first, in bounded batches.
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 (hex) of the canonical JSON of the parsed request body.
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # Chosen when the key is first claimed, so a resumed claim creates the same transfer.
    transfer_id: Mapped[uuid.UUID]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # An in-flight claim whose holder died is resumable once this has passed.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackClientRow(Base):
    """An external system allowed to send signed confirmation callbacks about the
    transfers out of its accounts (narrowed by its reference prefix, if it has one)."""

    __tablename__ = "callback_clients"
    __table_args__ = (
        UniqueConstraint("name", name="uq_callback_clients_name"),
        CheckConstraint(
            f"cardinality(account_ids) <= {CALLBACK_CLIENT_ACCOUNTS_MAX}",
            name="ck_callback_clients_account_ids_bounded",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(48))
    description: Mapped[str | None] = mapped_column(String(140))
    # Empty for a client registered before bindings existed: it decides nothing.
    account_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), server_default=text("'{}'::uuid[]")
    )
    reference_prefix: Mapped[str | None] = mapped_column(String(64))
    # The signing secret, AES-256-GCM encrypted (nonce + ciphertext + tag) under the
    # service's callback secrets key, with the client id as associated data.
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CallbackReceiptRow(Base):
    """A confirmation callback that took effect, once per (client, webhook-id)."""

    __tablename__ = "callback_receipts"
    __table_args__ = (
        CheckConstraint("decision IN ('approve', 'reject')", name="ck_callback_receipts_decision"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("callback_clients.id", name="fk_callback_receipts_client_id"), primary_key=True
    )
    webhook_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    transfer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("transfers.id", name="fk_callback_receipts_transfer_id"), index=True
    )
    decision: Mapped[str] = mapped_column(String(10))
    external_reference: Mapped[str] = mapped_column(String(64))
    # The answer given, replayed to a redelivery of the same webhook-id.
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class StandingOrderRow(TransferTermsColumns, Base):
    """A recurring transfer; its Temporal Schedule (`standing-order-<id>`) runs it."""

    __tablename__ = "standing_orders"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_standing_orders_amount_positive"),
        CheckConstraint(
            "source_account_id <> target_account_id", name="ck_standing_orders_distinct_accounts"
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_standing_orders_currency_code"),
        CheckConstraint(
            "status IN ('active', 'paused', 'cancelled')", name="ck_standing_orders_status_known"
        ),
        CheckConstraint("count IS NULL OR count > 0", name="ck_standing_orders_count_positive"),
        CheckConstraint(
            "end_at IS NULL OR end_at > start_at", name="ck_standing_orders_end_after_start"
        ),
        Index("ix_standing_orders_customer_created_at_id", "customer_id", "created_at", "id"),
        # The reconciler's work list: orders whose schedule is not known to exist.
        Index(
            "ix_standing_orders_unscheduled_created_at",
            "created_at",
            postgresql_where=text("schedule_created_at IS NULL AND status <> 'cancelled'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The customer who created it, the owner of the source account: its transfers are theirs.
    customer_id: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(140))
    interval: Mapped[str] = mapped_column(String(32))
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    # Set once its Temporal Schedule is known to exist; until then the reconciler creates
    # it (within the start deadline) or cancels the order (past it).
    schedule_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why the order ended cancelled when its owner did not cancel it (`not-scheduled`).
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StandingOrderOccurrenceRow(Base):
    """One scheduled time of a standing order and the transfer it created (once)."""

    __tablename__ = "standing_order_occurrences"
    __table_args__ = (
        CheckConstraint(
            "transfer_id IS NOT NULL OR failed_at IS NOT NULL",
            name="ck_standing_order_occurrences_transfer_or_failure",
        ),
    )

    standing_order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("standing_orders.id", name="fk_standing_order_occurrences_order_id"),
        primary_key=True,
    )
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # None when the transfer was refused for good (then failed_at and failure_reason say so).
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transfers.id", name="fk_standing_order_occurrences_transfer_id"), unique=True
    )
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# The tamper-evident trail of every audited change of this service (kit.audit).
audit_events = audit_table(Base.metadata)
