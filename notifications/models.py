"""Tables of the notifications database."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.audit import audit_table

# W3C Trace Context: a version 00 traceparent is exactly 55 characters; vendors must keep a
# tracestate to 512 characters for it to be propagated.
TRACEPARENT_LENGTH = 55
TRACESTATE_LENGTH_MAX = 512


class Base(DeclarativeBase):
    pass


# The service's tamper-evident audit trail (kit.audit): endpoint, delivery and contact changes.
AUDIT_EVENTS = audit_table(Base.metadata)


class EventRow(Base):
    """An accepted event. Immutable; its id is chosen by the publisher (idempotency)."""

    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The W3C trace context of the request that published it: deliveries join that trace.
    traceparent: Mapped[str | None] = mapped_column(String(TRACEPARENT_LENGTH))
    tracestate: Mapped[str | None] = mapped_column(String(TRACESTATE_LENGTH_MAX))


class WebhookEndpointRow(Base):
    """A customer's webhook URL and the event types it subscribes to."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_customer", "customer_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(140))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookSecretRow(Base):
    """A signing secret; `expires_at` is None for the current one, set when it is rotated out.

    Kept sealed (kit.sealing, the row id as associated data) in `secret_sealed`; `secret`
    holds the plain text of a row written before sealing, until the service seals it.
    """

    __tablename__ = "webhook_secrets"
    __table_args__ = (
        CheckConstraint(
            "(secret IS NULL) <> (secret_sealed IS NULL)", name="ck_webhook_secrets_sealed_or_plain"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str | None] = mapped_column(String(100))
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryRow(Base):
    """One event to one endpoint: the outbox row the dispatcher claims, sends and retries.

    `attempts_made` numbers attempts over the delivery's life and `round_attempts_made`
    those of the current round of the retry schedule (a redelivery starts a new round);
    both count an attempt when it is claimed, so one whose sender dies counts too. A claim
    holds a lease: `lease_token` fences the result, so an attempt whose lease expired
    cannot record over a newer one; a lease that expired unrecorded is an abandoned
    attempt, logged as one before the delivery is claimed again.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
        Index(
            "ix_webhook_deliveries_leased",
            "lease_expires_at",
            postgresql_where=text("lease_token IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts_made: Mapped[int] = mapped_column(Integer)
    round_attempts_made: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column()
    # When the lease was taken: the start of an attempt that may never finish.
    leased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryAttemptRow(Base):
    """The log of one attempt: what the endpoint answered, how fast, and what came next."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "number", name="uq_webhook_delivery_attempts_number"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(300))
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class EmailContactRow(Base):
    """Where a customer's transfer emails go (one address per customer)."""

    __tablename__ = "email_contacts"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EmailMessageRow(Base):
    """An email composed when its event was accepted (outbox), sent and retried like a
    delivery: `attempts_made` counts an attempt when it is claimed, and a lease that expired
    unrecorded is an attempt that failed ("the attempt did not finish")."""

    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("event_id", "customer_id", name="uq_email_messages_event_customer"),
        Index(
            "ix_email_messages_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_email_messages_leased",
            "lease_expires_at",
            postgresql_where=text("lease_token IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts_made: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column()
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
