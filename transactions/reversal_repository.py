"""The queries of reversals: transfers rows that name the transfer they reverse."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reversals import REVERSAL_FAILED_STATUSES
from contracts.transfers import TRANSFER_REVERSALS_MAX, TransferStatus
from transactions.models import Base, TransferRow

_transfers = Base.metadata.tables["transfers"]
_FAILED: Final = sorted(status.value for status in REVERSAL_FAILED_STATUSES)


async def lock_transfer(session: AsyncSession, transfer_id: uuid.UUID) -> TransferRow | None:
    """The transfer, its row locked until the transaction ends: reversals of one transfer
    are admitted one at a time, each seeing the amounts of those admitted before it."""
    statement = select(TransferRow).where(TransferRow.id == transfer_id).with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def reversal_totals(session: AsyncSession, transfer_id: uuid.UUID) -> tuple[int, int]:
    """What the transfer's reversals moved back or are moving (failed ones free theirs),
    and how many reversals it has in all (failed ones included)."""
    statement = select(
        func.coalesce(
            func.sum(TransferRow.amount_minor).filter(TransferRow.status.not_in(_FAILED)), 0
        ),
        func.count(),
    ).where(TransferRow.reversal_of == transfer_id)
    amount_minor, count = (await session.execute(statement)).one()
    return int(amount_minor), int(count)


async def insert_reversal(
    session: AsyncSession,
    *,
    reversal_id: uuid.UUID,
    original: TransferRow,
    amount_minor: int,
    reason: str,
    customer_id: str | None,
) -> datetime:
    """Insert a pending reversal of `original`, payee to payer; when it was recorded."""
    row = {
        "id": reversal_id,
        "source_account_id": original.target_account_id,
        "target_account_id": original.source_account_id,
        "amount_minor": amount_minor,
        "currency": original.currency,
        "description": None,
        "metadata": {},
        "customer_id": customer_id,
        "status": TransferStatus.pending.value,
        "version": 0,
        "reversal_of": original.id,
        "reversal_reason": reason,
    }
    created_at: datetime = (await session.execute(_INSERT_REVERSAL, row)).scalar_one()
    return created_at


# VALUES from the keys of the row passed with it; the caller checked the id is new.
_INSERT_REVERSAL: Final = insert(_transfers).returning(_transfers.c.created_at)


async def get_reversal(session: AsyncSession, reversal_id: uuid.UUID) -> TransferRow | None:
    statement = select(TransferRow).where(
        TransferRow.id == bindparam("reversal_id"), TransferRow.reversal_of.is_not(None)
    )
    return (await session.execute(statement, {"reversal_id": reversal_id})).scalar_one_or_none()


async def list_reversals(
    session: AsyncSession, transfer_ids: Sequence[uuid.UUID]
) -> Sequence[TransferRow]:
    """The reversals of these transfers, oldest first (admission allows each transfer at
    most TRANSFER_REVERSALS_MAX)."""
    if not transfer_ids:
        return []
    statement = (
        select(TransferRow)
        .where(TransferRow.reversal_of.in_(transfer_ids))
        .order_by(TransferRow.created_at, TransferRow.id)
        .limit(TRANSFER_REVERSALS_MAX * len(transfer_ids))
    )
    return (await session.execute(statement)).scalars().all()
