"""Every query of standing orders and their occurrences."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.standing_orders import StandingOrderCreate, StandingOrderStatus
from transactions.models import Base, StandingOrderOccurrenceRow, StandingOrderRow, TransferRow

_orders = Base.metadata.tables["standing_orders"]
_occurrences = Base.metadata.tables["standing_order_occurrences"]


async def insert_order(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    customer_id: str,
    order: StandingOrderCreate,
) -> bool:
    """Insert an active order unless its id exists (a resumed create); whether it did."""
    statement = (
        insert(_orders)
        .values(
            id=standing_order_id,
            customer_id=customer_id,
            source_account_id=order.source_account_id,
            target_account_id=order.target_account_id,
            amount_minor=order.amount_minor,
            currency=order.currency,
            description=order.description,
            interval=order.interval,
            start_at=order.start_at,
            end_at=order.end_at,
            count=order.count,
            status=StandingOrderStatus.active.value,
        )
        .on_conflict_do_nothing(index_elements=[_orders.c.id])
        .returning(_orders.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def get_order(session: AsyncSession, standing_order_id: uuid.UUID) -> StandingOrderRow | None:
    return await session.get(StandingOrderRow, standing_order_id, populate_existing=True)


async def list_orders(
    session: AsyncSession,
    *,
    customer_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[StandingOrderRow]:
    """Newest first by (created_at, id); with `customer_id`, only that customer's."""
    assert limit > 0
    statement = select(StandingOrderRow)
    if customer_id is not None:
        statement = statement.where(StandingOrderRow.customer_id == customer_id)
    if after is not None:
        after_created_at, after_id = after
        statement = statement.where(
            or_(
                StandingOrderRow.created_at < after_created_at,
                and_(
                    StandingOrderRow.created_at == after_created_at,
                    StandingOrderRow.id < after_id,
                ),
            )
        )
    statement = statement.order_by(
        StandingOrderRow.created_at.desc(), StandingOrderRow.id.desc()
    ).limit(limit)
    return (await session.execute(statement)).scalars().all()


async def set_status(
    session: AsyncSession, *, standing_order_id: uuid.UUID, status: StandingOrderStatus
) -> str | None:
    """Move the order to `status` (a cancelled order stays cancelled); the status it left,
    or None when it did not move (already there, cancelled, or missing)."""
    locked = select(_orders.c.status).where(_orders.c.id == standing_order_id).with_for_update()
    before: str | None = (await session.execute(locked)).scalar_one_or_none()
    if before is None or before in (status.value, StandingOrderStatus.cancelled.value):
        return None
    await session.execute(
        update(_orders)
        .where(_orders.c.id == standing_order_id)
        .values(status=status.value, updated_at=func.now())
    )
    return before


async def get_occurrence(
    session: AsyncSession, *, standing_order_id: uuid.UUID, scheduled_at: datetime
) -> StandingOrderOccurrenceRow | None:
    return await session.get(
        StandingOrderOccurrenceRow, (standing_order_id, scheduled_at), populate_existing=True
    )


async def insert_occurrence(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    scheduled_at: datetime,
    transfer_id: uuid.UUID,
) -> None:
    """Record the transfer of one scheduled time, unless recorded already (the same one:
    both derive from the same idempotency key)."""
    await session.execute(
        insert(_occurrences)
        .values(
            standing_order_id=standing_order_id, scheduled_at=scheduled_at, transfer_id=transfer_id
        )
        .on_conflict_do_nothing(
            index_elements=[_occurrences.c.standing_order_id, _occurrences.c.scheduled_at]
        )
    )


async def insert_refused_occurrence(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    scheduled_at: datetime,
    failure_reason: str,
) -> bool:
    """Record a scheduled time whose transfer was refused for good (no transfer), unless
    recorded already; True the first time."""
    result = await session.execute(
        insert(_occurrences)
        .values(
            standing_order_id=standing_order_id,
            scheduled_at=scheduled_at,
            transfer_id=None,
            failed_at=func.now(),
            failure_reason=failure_reason,
        )
        .on_conflict_do_nothing(
            index_elements=[_occurrences.c.standing_order_id, _occurrences.c.scheduled_at]
        )
        .returning(_occurrences.c.scheduled_at)
    )
    return result.scalar_one_or_none() is not None


async def mark_occurrence_failed(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    scheduled_at: datetime,
    failure_reason: str | None,
) -> bool:
    """Record that the occurrence's transfer did not complete; True the first time."""
    result = await session.execute(
        update(_occurrences)
        .where(
            _occurrences.c.standing_order_id == standing_order_id,
            _occurrences.c.scheduled_at == scheduled_at,
            _occurrences.c.failed_at.is_(None),
        )
        .values(failed_at=func.now(), failure_reason=failure_reason)
        .returning(_occurrences.c.transfer_id)
    )
    return result.scalar_one_or_none() is not None


async def list_occurrences(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    after: datetime | None,
    limit: int,
) -> Sequence[Row[StandingOrderOccurrenceRow, str | None, str | None]]:
    """Oldest first by scheduled time, each with its transfer's status and failure reason
    (None for an occurrence refused without a transfer)."""
    assert limit > 0
    statement = (
        select(StandingOrderOccurrenceRow, TransferRow.status, TransferRow.failure_reason)
        .outerjoin(TransferRow, TransferRow.id == StandingOrderOccurrenceRow.transfer_id)
        .where(StandingOrderOccurrenceRow.standing_order_id == standing_order_id)
    )
    if after is not None:
        statement = statement.where(StandingOrderOccurrenceRow.scheduled_at > after)
    statement = statement.order_by(StandingOrderOccurrenceRow.scheduled_at).limit(limit)
    return (await session.execute(statement)).all()


async def lock_order(
    session: AsyncSession, standing_order_id: uuid.UUID
) -> StandingOrderRow | None:
    """The order, locked until the transaction ends: whoever holds it alone decides
    whether the order's schedule is created or the order ends unscheduled."""
    statement = (
        select(StandingOrderRow)
        .where(StandingOrderRow.id == standing_order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def mark_schedule_created(session: AsyncSession, *, standing_order_id: uuid.UUID) -> None:
    """Record that the order's schedule exists (once: a later mark keeps the first time)."""
    await session.execute(
        update(_orders)
        .where(_orders.c.id == standing_order_id, _orders.c.schedule_created_at.is_(None))
        .values(schedule_created_at=func.now())
    )


async def cancel_unscheduled(
    session: AsyncSession, *, standing_order_id: uuid.UUID, reason: str
) -> None:
    """End an order whose schedule was never created: cancelled, with the reason."""
    await session.execute(
        update(_orders)
        .where(_orders.c.id == standing_order_id, _orders.c.schedule_created_at.is_(None))
        .values(
            status=StandingOrderStatus.cancelled.value,
            cancellation_reason=reason,
            updated_at=func.now(),
        )
    )


async def unscheduled_orders(
    session: AsyncSession, *, created_before: datetime, limit: int
) -> Sequence[uuid.UUID]:
    """Orders not cancelled whose schedule is not known to exist, oldest first."""
    assert limit > 0
    statement = (
        select(_orders.c.id)
        .where(
            _orders.c.schedule_created_at.is_(None),
            _orders.c.status != StandingOrderStatus.cancelled.value,
            _orders.c.created_at < created_before,
        )
        .order_by(_orders.c.created_at)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()
