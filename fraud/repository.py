"""Every query of the fraud service."""

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.fraud import FraudDecision, ScoreRequest
from fraud.models import ScoreRow
from fraud.scoring import Evaluation, Features


async def get_score(session: AsyncSession, transfer_id: uuid.UUID) -> ScoreRow | None:
    return (
        await session.execute(select(ScoreRow).where(ScoreRow.transfer_id == transfer_id))
    ).scalar_one_or_none()


async def insert_score(
    session: AsyncSession,
    *,
    request: ScoreRequest,
    evaluation: Evaluation,
    ruleset_version: str,
    created_at: datetime,
) -> bool:
    """Insert unless the transfer was scored already; True when this call created the row."""
    statement = (
        insert(ScoreRow)
        .values(
            transfer_id=request.transfer_id,
            source_account_id=request.source_account_id,
            target_account_id=request.target_account_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            score=evaluation.score,
            decision=evaluation.decision.value,
            reasons=[reason.model_dump(mode="json") for reason in evaluation.reasons],
            ruleset_version=ruleset_version,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=[ScoreRow.transfer_id])
        .returning(ScoreRow.transfer_id)
    )
    created = (await session.execute(statement)).scalar_one_or_none()
    return created is not None


async def read_features(
    session: AsyncSession,
    *,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    currency: str,
    window_start: datetime,
    now: datetime,
) -> Features:
    """The source's transfers scored in (window_start, now] and whether it knows the target.

    Every scored attempt counts towards velocity, declined ones included: a burst of
    refused attempts is itself a signal. Only an approved transfer makes a target known,
    so a fraudster cannot make a recipient familiar by sending a declined transfer first.
    """
    assert window_start < now, "the window must end after it starts"
    window = and_(
        ScoreRow.source_account_id == source_account_id,
        ScoreRow.created_at > window_start,
        ScoreRow.created_at <= now,
    )
    recent_transfer_count, recent_amount = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(
                    func.sum(ScoreRow.amount_minor).filter(ScoreRow.currency == currency), 0
                ),
            ).where(window)
        )
    ).one()
    counterparty_known = (
        await session.execute(
            select(
                exists().where(
                    ScoreRow.source_account_id == source_account_id,
                    ScoreRow.target_account_id == target_account_id,
                    ScoreRow.decision == FraudDecision.approve.value,
                    ScoreRow.created_at <= now,
                )
            )
        )
    ).scalar_one()
    # sum(bigint) is numeric in PostgreSQL: a Decimal holding a whole number, never a float.
    assert isinstance(recent_amount, Decimal | int)
    assert recent_amount == int(recent_amount)
    return Features(
        recent_transfer_count=int(recent_transfer_count),
        recent_amount_minor=int(recent_amount),
        counterparty_known=bool(counterparty_known),
    )
