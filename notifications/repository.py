"""Every query of the notifications service."""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, event, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.notifications import EventCreate
from contracts.secrets import ResealBatch
from kit import audit
from kit.resealing import SealedColumns, reseal_batch
from kit.sealing import KeyRing
from notifications.models import (
    AUDIT_EVENTS,
    TRACEPARENT_LENGTH,
    TRACESTATE_LENGTH_MAX,
    DeliveryAttemptRow,
    DeliveryRow,
    EmailContactRow,
    EmailMessageRow,
    EventRow,
    WebhookEndpointRow,
    WebhookSecretRow,
)

PENDING = "pending"
# The two kinds of row the dispatcher leases: webhook deliveries and emails.
LeasedRow = TypeVar("LeasedRow", DeliveryRow, EmailMessageRow)


def call_after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once this session's transaction has committed (never on rollback)."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


async def append_audit(session: AsyncSession, event: AuditEventCreate) -> None:
    """Record `event` in the caller's transaction: it commits or rolls back with the change."""
    await audit.append(session, AUDIT_EVENTS, event)


# --- events -------------------------------------------------------------------------


async def insert_event(
    session: AsyncSession, event: EventCreate, *, trace_context: Mapping[str, str]
) -> bool:
    """Insert unless the id exists, with the W3C `trace_context` it was published in (a
    first publication's is kept); True when this call created it."""
    traceparent = trace_context.get("traceparent")
    tracestate = trace_context.get("tracestate")
    statement = (
        insert(EventRow)
        .values(
            id=event.id,
            type=event.type.value,
            occurred_at=event.timestamp,
            data=event.data,
            traceparent=traceparent
            if traceparent and len(traceparent) == TRACEPARENT_LENGTH
            else None,
            # A tracestate cut short would be invalid: one too long is not kept at all.
            tracestate=tracestate
            if tracestate and len(tracestate) <= TRACESTATE_LENGTH_MAX
            else None,
        )
        .on_conflict_do_nothing(index_elements=[EventRow.id])
        .returning(EventRow.id)
    )
    created = (await session.execute(statement)).scalar_one_or_none()
    return created is not None


async def get_event(session: AsyncSession, event_id: uuid.UUID) -> EventRow | None:
    return (
        await session.execute(select(EventRow).where(EventRow.id == event_id))
    ).scalar_one_or_none()


# --- webhook endpoints and secrets --------------------------------------------------


async def _lock_until_commit(session: AsyncSession, key: str) -> None:
    """Take the transaction-scoped advisory lock named `key`; it is released when the
    caller's transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )


async def lock_customer_endpoints(session: AsyncSession, customer_id: str) -> None:
    """Serialise endpoint creation per customer, so the per-customer cap holds under races."""
    await _lock_until_commit(session, f"webhook-endpoints:{customer_id}")


async def count_endpoints(session: AsyncSession, customer_id: str) -> int:
    statement = select(func.count()).where(WebhookEndpointRow.customer_id == customer_id)
    return (await session.execute(statement)).scalar_one()


async def insert_endpoint(session: AsyncSession, row: WebhookEndpointRow) -> None:
    session.add(row)
    await session.flush()


async def get_endpoint(
    session: AsyncSession,
    *,
    endpoint_id: uuid.UUID,
    customer_id: str | None,
    for_update: bool = False,
) -> WebhookEndpointRow | None:
    """The endpoint if `customer_id` owns it; `customer_id=None` (an operator reading) finds
    anyone's."""
    statement = select(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id)
    if customer_id is not None:
        statement = statement.where(WebhookEndpointRow.customer_id == customer_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_endpoints(
    session: AsyncSession,
    *,
    customer_id: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[WebhookEndpointRow]:
    """A customer's endpoints in (created_at, id) order, strictly after `after`."""
    statement = select(WebhookEndpointRow).where(WebhookEndpointRow.customer_id == customer_id)
    if after is not None:
        statement = statement.where(
            tuple_(WebhookEndpointRow.created_at, WebhookEndpointRow.id) > tuple_(*after)
        )
    statement = statement.order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id)
    return (await session.execute(statement.limit(limit))).scalars().all()


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """Its secrets, deliveries and their attempts go with it (ON DELETE CASCADE)."""
    await session.execute(delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id))


async def flush(session: AsyncSession) -> None:
    await session.flush()


async def insert_secret(
    session: AsyncSession,
    *,
    secret_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    secret_sealed: bytes,
    now: datetime,
) -> None:
    session.add(
        WebhookSecretRow(
            id=secret_id,
            endpoint_id=endpoint_id,
            secret=None,
            secret_sealed=secret_sealed,
            created_at=now,
            expires_at=None,
        )
    )
    await session.flush()


@dataclass(frozen=True)
class StoredSecret:
    """A secret as the table keeps it: sealed, or (written before sealing) in plain text."""

    secret_id: uuid.UUID
    sealed: bytes | None
    plain_text: str | None


async def live_secret_rows(
    session: AsyncSession, *, endpoint_id: uuid.UUID, now: datetime
) -> Sequence[WebhookSecretRow]:
    """The secrets still signing for an endpoint, newest first."""
    statement = (
        select(WebhookSecretRow)
        .where(
            WebhookSecretRow.endpoint_id == endpoint_id,
            or_(WebhookSecretRow.expires_at.is_(None), WebhookSecretRow.expires_at > now),
        )
        .order_by(WebhookSecretRow.created_at.desc(), WebhookSecretRow.id)
    )
    return (await session.execute(statement)).scalars().all()


async def live_secrets(
    session: AsyncSession, *, endpoint_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, list[StoredSecret]]:
    """Per endpoint, the secrets that sign a request sent at `now`, newest first."""
    statement = (
        select(
            WebhookSecretRow.endpoint_id,
            WebhookSecretRow.id,
            WebhookSecretRow.secret_sealed,
            WebhookSecretRow.secret,
        )
        .where(
            WebhookSecretRow.endpoint_id.in_(endpoint_ids),
            or_(WebhookSecretRow.expires_at.is_(None), WebhookSecretRow.expires_at > now),
        )
        .order_by(WebhookSecretRow.created_at.desc(), WebhookSecretRow.id)
    )
    secrets: dict[uuid.UUID, list[StoredSecret]] = {}
    for endpoint_id, secret_id, sealed, plain_text in (await session.execute(statement)).all():
        secrets.setdefault(endpoint_id, []).append(StoredSecret(secret_id, sealed, plain_text))
    return secrets


SEALED_SECRETS = SealedColumns(
    id=WebhookSecretRow.id,
    sealed=WebhookSecretRow.secret_sealed,
    plain_text=WebhookSecretRow.secret,
)


async def reseal_secrets(
    session: AsyncSession,
    ring: KeyRing,
    *,
    after: uuid.UUID | None,
    limit: int,
    plain_text_only: bool = False,
) -> ResealBatch:
    """Seal up to `limit` secrets after `after` under the newest key (kit.resealing)."""
    return await reseal_batch(
        session,
        SEALED_SECRETS,
        ring,
        service="notifications",
        after=after,
        limit=limit,
        plain_text_only=plain_text_only,
    )


async def expire_secrets(
    session: AsyncSession, *, secret_ids: Sequence[uuid.UUID], expires_at: datetime
) -> None:
    """Bring expiry forward to `expires_at` (never push an earlier expiry back)."""
    await session.execute(
        update(WebhookSecretRow)
        .where(WebhookSecretRow.id.in_(secret_ids))
        .values(
            expires_at=func.least(
                func.coalesce(WebhookSecretRow.expires_at, expires_at), expires_at
            )
        )
        .execution_options(synchronize_session=False)
    )


async def delete_expired_secrets(
    session: AsyncSession, *, endpoint_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        delete(WebhookSecretRow).where(
            WebhookSecretRow.endpoint_id == endpoint_id, WebhookSecretRow.expires_at <= now
        )
    )


# --- fan-out (the outbox) -----------------------------------------------------------


async def subscribed_endpoints(
    session: AsyncSession, *, customer_ids: Sequence[str], event_type: str
) -> Sequence[tuple[uuid.UUID, str]]:
    """(endpoint id, owner) of the enabled endpoints of these customers taking this type."""
    statement = select(WebhookEndpointRow.id, WebhookEndpointRow.customer_id).where(
        WebhookEndpointRow.customer_id.in_(customer_ids),
        WebhookEndpointRow.enabled.is_(True),
        WebhookEndpointRow.event_types.contains([event_type]),
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def insert_deliveries(
    session: AsyncSession, *, event_id: uuid.UUID, endpoint_ids: Sequence[uuid.UUID], now: datetime
) -> None:
    if not endpoint_ids:
        return
    rows = [
        {
            "id": uuid.uuid4(),
            "event_id": event_id,
            "endpoint_id": endpoint_id,
            "status": PENDING,
            "attempts_made": 0,
            "round_attempts_made": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for endpoint_id in endpoint_ids
    ]
    await session.execute(
        insert(DeliveryRow)
        .values(rows)
        .on_conflict_do_nothing(constraint="uq_webhook_deliveries_event_endpoint")
    )


async def email_contacts(
    session: AsyncSession, customer_ids: Sequence[str]
) -> Sequence[EmailContactRow]:
    statement = select(EmailContactRow).where(EmailContactRow.customer_id.in_(customer_ids))
    return (await session.execute(statement)).scalars().all()


async def insert_email_messages(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    await session.execute(
        insert(EmailMessageRow)
        .values(list(rows))
        .on_conflict_do_nothing(constraint="uq_email_messages_event_customer")
    )


# --- the dispatcher: claim, then record -----------------------------------------------


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: uuid.UUID
    # This attempt's number over the delivery's life (1 for the first).
    number: int
    # This attempt's number within the current round of the retry schedule (1 for the first).
    round_number: int
    endpoint_id: uuid.UUID
    url: str
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    data: dict[str, Any]
    # The event's W3C trace context (`traceparent`, `tracestate`); empty if it has none.
    trace_context: dict[str, str]


@dataclass(frozen=True)
class OutboxBacklog:
    """Events with a delivery or an email still pending, and the oldest such one's time."""

    pending_events: int
    oldest_pending_at: datetime | None


async def outbox_backlog(session: AsyncSession) -> OutboxBacklog:
    """One statement over the pending rows only (the partial `*_due` indexes hold exactly
    them); a disabled endpoint's deliveries wait for it, not for us, and are left out."""
    deliveries = (
        select(DeliveryRow.event_id, DeliveryRow.created_at)
        .join(WebhookEndpointRow, WebhookEndpointRow.id == DeliveryRow.endpoint_id)
        .where(DeliveryRow.status == PENDING, WebhookEndpointRow.enabled.is_(True))
    )
    emails = select(EmailMessageRow.event_id, EmailMessageRow.created_at).where(
        EmailMessageRow.status == PENDING
    )
    pending = deliveries.union_all(emails).subquery()
    count, oldest = (
        await session.execute(
            select(func.count(pending.c.event_id.distinct()), func.min(pending.c.created_at))
        )
    ).one()
    return OutboxBacklog(pending_events=count, oldest_pending_at=oldest)


async def claim_deliveries(
    session: AsyncSession,
    *,
    now: datetime,
    lease_token: uuid.UUID,
    lease_expires_at: datetime,
    limit: int,
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries of enabled endpoints, counting the attempt now (so
    one whose sender dies counts). SKIP LOCKED: concurrent claims take disjoint rows."""
    due = (
        select(DeliveryRow.id)
        .join(WebhookEndpointRow, WebhookEndpointRow.id == DeliveryRow.endpoint_id)
        .where(
            DeliveryRow.status == PENDING,
            DeliveryRow.next_attempt_at <= now,
            # Still leased, even past its expiry: its abandoned attempt is settled first.
            DeliveryRow.lease_token.is_(None),
            WebhookEndpointRow.enabled.is_(True),
        )
        .order_by(DeliveryRow.next_attempt_at)
        .limit(limit)
        .with_for_update(of=DeliveryRow, skip_locked=True)
    )
    claimed = (
        await session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(due))
            .values(
                lease_token=lease_token,
                leased_at=now,
                lease_expires_at=lease_expires_at,
                attempts_made=DeliveryRow.attempts_made + 1,
                round_attempts_made=DeliveryRow.round_attempts_made + 1,
                updated_at=now,
            )
            .returning(DeliveryRow.id, DeliveryRow.attempts_made, DeliveryRow.round_attempts_made)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return await _claimed_details(session, {row[0]: (row[1], row[2]) for row in claimed})


async def _claimed_details(
    session: AsyncSession, counts: dict[uuid.UUID, tuple[int, int]]
) -> list[ClaimedDelivery]:
    """What the claimed deliveries send, given each one's (number, round_number)."""
    if not counts:
        return []
    details = (
        await session.execute(
            select(
                DeliveryRow.id,
                DeliveryRow.endpoint_id,
                WebhookEndpointRow.url,
                EventRow.id,
                EventRow.type,
                EventRow.occurred_at,
                EventRow.data,
                EventRow.traceparent,
                EventRow.tracestate,
            )
            .join(WebhookEndpointRow, WebhookEndpointRow.id == DeliveryRow.endpoint_id)
            .join(EventRow, EventRow.id == DeliveryRow.event_id)
            .where(DeliveryRow.id.in_(list(counts)))
        )
    ).all()
    return [
        ClaimedDelivery(
            delivery_id=row[0],
            number=counts[row[0]][0],
            round_number=counts[row[0]][1],
            endpoint_id=row[1],
            url=row[2],
            event_id=row[3],
            event_type=row[4],
            occurred_at=row[5],
            data=row[6],
            trace_context={
                name: value
                for name, value in (("traceparent", row[7]), ("tracestate", row[8]))
                if value is not None
            },
        )
        for row in details
    ]


def _expired_leases(table: type[LeasedRow], *, now: datetime, limit: int) -> Select[LeasedRow]:
    """The pending rows of `table` (deliveries or emails) whose lease expired with no result
    recorded, oldest expiry first, to lock with SKIP LOCKED like a claim."""
    return (
        select(table)
        .where(
            table.status == PENDING,
            table.lease_token.is_not(None),
            table.lease_expires_at <= now,
        )
        .order_by(table.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@dataclass(frozen=True)
class AbandonedDelivery:
    """A delivery whose lease expired with no result recorded: its attempt never finished."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    lease_token: uuid.UUID
    # The abandoned attempt's number over the delivery's life, and within its round.
    number: int
    round_number: int
    leased_at: datetime
    lease_expires_at: datetime


async def lock_abandoned_deliveries(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[AbandonedDelivery]:
    """Up to `limit` deliveries whose lease expired unrecorded (the sender died or hung),
    locked until the caller's transaction ends; SKIP LOCKED, like a claim."""
    statement = _expired_leases(DeliveryRow, now=now, limit=limit)
    rows = (await session.execute(statement)).scalars().all()
    abandoned = []
    for row in rows:
        assert row.lease_token is not None
        assert row.lease_expires_at is not None
        abandoned.append(
            AbandonedDelivery(
                delivery_id=row.id,
                endpoint_id=row.endpoint_id,
                lease_token=row.lease_token,
                number=row.attempts_made,
                round_number=row.round_attempts_made,
                # A claim by a release before migration 0004 wrote no leased_at; a leased
                # row is written by nothing but its claim, so updated_at is that claim's time.
                leased_at=row.updated_at if row.leased_at is None else row.leased_at,
                lease_expires_at=row.lease_expires_at,
            )
        )
    return abandoned


async def record_attempt(
    session: AsyncSession,
    *,
    lease_token: uuid.UUID,
    attempt: DeliveryAttemptRow,
    status: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """Log an attempt (counted when it was claimed) and move its delivery on; False
    (nothing written) when the lease was lost meanwhile — the attempt was settled as
    abandoned, another dispatcher took the delivery over, or it was deleted."""
    endpoint_id = (
        await session.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.id == attempt.delivery_id,
                DeliveryRow.lease_token == lease_token,
                DeliveryRow.attempts_made == attempt.number,
            )
            .values(
                status=status,
                next_attempt_at=next_attempt_at,
                last_attempt_at=attempt.started_at,
                last_status_code=attempt.status_code,
                lease_token=None,
                leased_at=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(DeliveryRow.endpoint_id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if endpoint_id is None:
        return False
    session.add(attempt)
    await session.flush()
    return True


async def disable_endpoint(
    session: AsyncSession, *, endpoint_id: uuid.UUID, reason: str, now: datetime
) -> bool:
    """Disable an enabled endpoint; False when it was disabled (or deleted) already."""
    disabled = (
        await session.execute(
            update(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=now)
            .returning(WebhookEndpointRow.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    return disabled is not None


async def claim_emails(
    session: AsyncSession,
    *,
    now: datetime,
    lease_token: uuid.UUID,
    lease_expires_at: datetime,
    limit: int,
) -> Sequence[EmailMessageRow]:
    """Lease up to `limit` due messages, counting the attempt now (as claim_deliveries).
    A message still leased, even past its expiry, is settled first, not taken."""
    due = (
        select(EmailMessageRow.id)
        .where(
            EmailMessageRow.status == PENDING,
            EmailMessageRow.next_attempt_at <= now,
            EmailMessageRow.lease_token.is_(None),
        )
        .order_by(EmailMessageRow.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(EmailMessageRow)
        .where(EmailMessageRow.id.in_(due))
        .values(
            lease_token=lease_token,
            lease_expires_at=lease_expires_at,
            attempts_made=EmailMessageRow.attempts_made + 1,
            updated_at=now,
        )
        .returning(EmailMessageRow)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalars().all()


async def lock_abandoned_emails(
    session: AsyncSession, *, now: datetime, limit: int
) -> Sequence[EmailMessageRow]:
    """Up to `limit` messages whose lease expired unrecorded (the send died or hung),
    locked until the caller's transaction ends; SKIP LOCKED, like a claim."""
    statement = _expired_leases(EmailMessageRow, now=now, limit=limit)
    return (await session.execute(statement)).scalars().all()


async def record_email_result(
    session: AsyncSession,
    *,
    message_id: uuid.UUID,
    lease_token: uuid.UUID,
    status: str,
    next_attempt_at: datetime | None,
    last_error: str | None,
    sent_at: datetime | None,
    now: datetime,
) -> bool:
    recorded = (
        await session.execute(
            update(EmailMessageRow)
            .where(EmailMessageRow.id == message_id, EmailMessageRow.lease_token == lease_token)
            .values(
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=last_error,
                sent_at=sent_at,
                lease_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .returning(EmailMessageRow.id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    return recorded is not None


# --- deliveries, as their owner sees them ----------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: uuid.UUID,
    status: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[tuple[DeliveryRow, str]]:
    """An endpoint's deliveries with their event type, newest first, strictly before `before`."""
    statement = (
        select(DeliveryRow, EventRow.type)
        .join(EventRow, EventRow.id == DeliveryRow.event_id)
        .where(DeliveryRow.endpoint_id == endpoint_id)
    )
    if status is not None:
        statement = statement.where(DeliveryRow.status == status)
    if before is not None:
        statement = statement.where(
            tuple_(DeliveryRow.created_at, DeliveryRow.id) < tuple_(*before)
        )
    statement = statement.order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc())
    return [(row[0], row[1]) for row in (await session.execute(statement.limit(limit))).all()]


@dataclass(frozen=True)
class FoundDelivery:
    row: DeliveryRow
    event_type: str
    event_data: dict[str, Any]
    endpoint_enabled: bool


async def get_delivery(
    session: AsyncSession,
    *,
    delivery_id: uuid.UUID,
    customer_id: str | None,
    for_update: bool = False,
) -> FoundDelivery | None:
    """A delivery of one of the customer's endpoints, with its event and whether the
    endpoint is enabled; None when it does not exist or belongs to someone else.
    `customer_id=None` (an operator reading) finds anyone's."""
    statement = (
        select(DeliveryRow, EventRow.type, EventRow.data, WebhookEndpointRow.enabled)
        .join(WebhookEndpointRow, WebhookEndpointRow.id == DeliveryRow.endpoint_id)
        .join(EventRow, EventRow.id == DeliveryRow.event_id)
        .where(DeliveryRow.id == delivery_id)
    )
    if customer_id is not None:
        statement = statement.where(WebhookEndpointRow.customer_id == customer_id)
    if for_update:
        statement = statement.with_for_update(of=DeliveryRow)
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    return FoundDelivery(row=row[0], event_type=row[1], event_data=row[2], endpoint_enabled=row[3])


async def delivery_attempts(
    session: AsyncSession, *, delivery_id: uuid.UUID, limit: int
) -> Sequence[DeliveryAttemptRow]:
    statement = (
        select(DeliveryAttemptRow)
        .where(DeliveryAttemptRow.delivery_id == delivery_id)
        .order_by(DeliveryAttemptRow.number.desc())
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


# --- email contacts --------------------------------------------------------------------


async def lock_customer_contact(session: AsyncSession, customer_id: str) -> None:
    """Serialise changes of one customer's contact, so each audit event's `before` is exact."""
    await _lock_until_commit(session, f"email-contact:{customer_id}")


async def upsert_email_contact(
    session: AsyncSession, *, customer_id: str, address: str, now: datetime
) -> EmailContactRow:
    statement = (
        insert(EmailContactRow)
        .values(customer_id=customer_id, address=address, created_at=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=[EmailContactRow.customer_id],
            set_={"address": address, "updated_at": now},
        )
        .returning(EmailContactRow)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one()


async def get_email_contact(session: AsyncSession, customer_id: str) -> EmailContactRow | None:
    return await session.get(EmailContactRow, customer_id)


async def delete_email_contact(session: AsyncSession, customer_id: str) -> str | None:
    """The deleted address; None when the customer had none."""
    deleted = (
        await session.execute(
            delete(EmailContactRow)
            .where(EmailContactRow.customer_id == customer_id)
            .returning(EmailContactRow.address)
        )
    ).scalar_one_or_none()
    return deleted
