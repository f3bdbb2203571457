"""Every query of the fraud service."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    BindParameter,
    DateTime,
    Select,
    String,
    Subquery,
    Table,
    Uuid,
    bindparam,
    case,
    delete,
    exists,
    func,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.fraud import DenyListEntryCreate, FraudDecision, OutcomeReport, ScoreRequest
from fraud.models import (
    AccountFeaturesRow,
    DeniedAccountRow,
    OutcomeRow,
    PendingReviewRow,
    ScoreRow,
    ShadowScoreRow,
    audit_events,
)
from fraud.scoring import DAY_SECONDS, HOUR_SECONDS, Evaluation
from kit import audit


def _whole(value: Any) -> int:
    # sum(bigint) is numeric in PostgreSQL: a Decimal holding a whole number, never a float.
    assert isinstance(value, Decimal | int), f"expected a whole number, got {value!r}"
    assert value == int(value)
    return int(value)


# -- scores ------------------------------------------------------------------------------


async def get_score(session: AsyncSession, transfer_id: uuid.UUID) -> ScoreRow | None:
    return (
        await session.execute(select(ScoreRow).where(ScoreRow.transfer_id == transfer_id))
    ).scalar_one_or_none()


def _insert_score_statement() -> Select[Any]:
    """Insert a score unless its transfer has one; a `review` also enters the queue.

    One statement, so the score and its queue entry cannot part. Built once, with bound
    parameters, as the hot path runs it per transfer.
    """
    scores = cast(Table, ScoreRow.__table__)
    pending_reviews = cast(Table, PendingReviewRow.__table__)
    inserted = (
        insert(scores)
        .values({column.name: bindparam(column.name, type_=column.type) for column in scores.c})
        .on_conflict_do_nothing(index_elements=[scores.c.transfer_id])
        .returning(scores.c.transfer_id, scores.c.decision, scores.c.created_at)
        .cte("inserted")
    )
    queued = (
        insert(pending_reviews)
        .from_select(
            ["transfer_id", "scored_at"],
            select(inserted.c.transfer_id, inserted.c.created_at).where(
                inserted.c.decision == FraudDecision.review.value
            ),
        )
        .cte("queued")
    )
    return select(inserted.c.transfer_id).add_cte(queued)


_INSERT_SCORE = _insert_score_statement()


async def insert_score(
    session: AsyncSession,
    *,
    request: ScoreRequest,
    evaluation: Evaluation,
    ruleset_version: str,
    created_at: datetime,
) -> bool:
    """Insert unless the transfer was scored already; True when this call created the row."""
    values = {
        "transfer_id": request.transfer_id,
        "source_account_id": request.source_account_id,
        "target_account_id": request.target_account_id,
        "amount_minor": request.amount_minor,
        "currency": request.currency,
        "score": evaluation.score,
        "decision": evaluation.decision.value,
        "reasons": [reason.model_dump(mode="json") for reason in evaluation.reasons],
        "ruleset_version": ruleset_version,
        "created_at": created_at,
    }
    return (await session.execute(_INSERT_SCORE, values)).scalar_one_or_none() is not None


async def insert_shadow_score(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    evaluation: Evaluation,
    ruleset_version: str,
    live_ruleset_version: str,
    live_decision: FraudDecision,
    created_at: datetime,
) -> None:
    await session.execute(
        insert(ShadowScoreRow)
        .values(
            transfer_id=transfer_id,
            ruleset_version=ruleset_version,
            score=evaluation.score,
            decision=evaluation.decision.value,
            reasons=[reason.model_dump(mode="json") for reason in evaluation.reasons],
            live_ruleset_version=live_ruleset_version,
            live_decision=live_decision.value,
            created_at=created_at,
        )
        .on_conflict_do_nothing(
            index_elements=[ShadowScoreRow.transfer_id, ShadowScoreRow.ruleset_version]
        )
    )


async def list_shadow_scores(
    session: AsyncSession, *, transfer_id: uuid.UUID, limit: int
) -> list[ShadowScoreRow]:
    statement = (
        select(ShadowScoreRow)
        .where(ShadowScoreRow.transfer_id == transfer_id)
        .order_by(ShadowScoreRow.created_at, ShadowScoreRow.ruleset_version)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def compare_shadow(
    session: AsyncSession, *, ruleset_version: str | None, since: datetime, until: datetime
) -> list[tuple[str, str, int]]:
    """(live decision, shadow decision, count) over shadow verdicts recorded in the period."""
    conditions = [ShadowScoreRow.created_at >= since, ShadowScoreRow.created_at <= until]
    if ruleset_version is not None:
        conditions.append(ShadowScoreRow.ruleset_version == ruleset_version)
    statement = (
        select(ShadowScoreRow.live_decision, ShadowScoreRow.decision, func.count())
        .where(*conditions)
        .group_by(ShadowScoreRow.live_decision, ShadowScoreRow.decision)
        .order_by(ShadowScoreRow.live_decision, ShadowScoreRow.decision)
    )
    return [(live, shadow, int(count)) for live, shadow, count in await session.execute(statement)]


# -- features ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSnapshot:
    """The raw figures scoring reads about one source account, as of one moment."""

    transfers_last_hour: int
    amount_last_hour_minor: int
    transfers_last_day: int
    amount_last_day_minor: int
    round_transfers_last_hour: int
    declines_last_day: int
    counterparty_known: bool | None
    source_denied: bool
    target_denied: bool
    first_seen_at: datetime | None
    completed_transfers: int
    amount_currency: str | None
    amount_median_minor: int | None
    amount_spread_minor: int | None
    amount_sample_size: int


class _FeatureParameters(NamedTuple):
    """The bound parameters of the features query, named once."""

    source_account_id: BindParameter[Any]
    target_account_id: BindParameter[Any]
    currency: BindParameter[Any]
    round_multiple_minor: BindParameter[Any]
    now: BindParameter[Any]
    hour_start: BindParameter[Any]
    day_start: BindParameter[Any]


def _recent_transfers(parameters: _FeatureParameters) -> Subquery:
    """The source's transfers of the last day, each `moved` or `declined`: its outcomes
    (completed moved money, declined is a decline) plus its scored transfers with no
    outcome yet (in flight: moving money unless the score declined them)."""
    outcome = OutcomeRow.__table__.c
    score = ScoreRow.__table__.c
    finished = select(
        outcome.amount_minor,
        outcome.currency,
        outcome.occurred_at.label("at"),
        case((outcome.final_status == "completed", "moved"), else_="declined").label("kind"),
    ).where(
        outcome.source_account_id == parameters.source_account_id,
        outcome.occurred_at > parameters.day_start,
        outcome.occurred_at <= parameters.now,
        outcome.final_status.in_(("completed", "declined")),
    )
    in_flight = select(
        score.amount_minor,
        score.currency,
        score.created_at.label("at"),
        case((score.decision == FraudDecision.decline.value, "declined"), else_="moved").label(
            "kind"
        ),
    ).where(
        score.source_account_id == parameters.source_account_id,
        score.created_at > parameters.day_start,
        score.created_at <= parameters.now,
        ~exists().where(outcome.transfer_id == score.transfer_id),
    )
    return union_all(finished, in_flight).subquery("recent")


def _recent_aggregates(recent: Subquery, parameters: _FeatureParameters) -> Subquery:
    """Counts and sums of the recent transfers, by hour and day, in the request's currency."""
    moved = recent.c.kind == "moved"
    in_hour = recent.c.at > parameters.hour_start
    same_currency = recent.c.currency == parameters.currency
    round_amount = recent.c.amount_minor % parameters.round_multiple_minor == 0
    return select(
        func.count().filter(moved & in_hour).label("transfers_last_hour"),
        func.coalesce(
            func.sum(recent.c.amount_minor).filter(moved & in_hour & same_currency), 0
        ).label("amount_last_hour_minor"),
        func.count().filter(moved).label("transfers_last_day"),
        func.coalesce(func.sum(recent.c.amount_minor).filter(moved & same_currency), 0).label(
            "amount_last_day_minor"
        ),
        func.count()
        .filter(moved & in_hour & same_currency & round_amount)
        .label("round_transfers_last_hour"),
        func.count().filter(recent.c.kind == "declined").label("declines_last_day"),
    ).subquery("aggregates")


def _features_statement() -> Select[Any]:
    """Everything scoring needs about the source (and target), as one query.

    A burst is seen while it happens, and a transfer counts once, before and after its
    outcome arrives (`_recent_transfers`). Rejected, expired and cancelled transfers moved
    nothing and drop out.

    Built once, with bound parameters: constructing and compiling a statement this size
    per request would cost more than the database spends running it.
    """
    parameters = _FeatureParameters(
        source_account_id=bindparam("source_account_id", type_=Uuid()),
        target_account_id=bindparam("target_account_id", type_=Uuid()),
        currency=bindparam("currency", type_=String()),
        round_multiple_minor=bindparam("round_multiple_minor", type_=BigInteger()),
        now=bindparam("now", type_=DateTime(timezone=True)),
        hour_start=bindparam("hour_start", type_=DateTime(timezone=True)),
        day_start=bindparam("day_start", type_=DateTime(timezone=True)),
    )
    aggregates = _recent_aggregates(_recent_transfers(parameters), parameters)
    outcome = OutcomeRow.__table__.c
    denied = DeniedAccountRow.__table__.c
    features = AccountFeaturesRow.__table__
    source_account_id = parameters.source_account_id
    target_account_id = parameters.target_account_id
    # A NULL target (no counterparty asked about) makes both target questions false.
    return select(
        aggregates,
        exists()
        .where(
            outcome.source_account_id == source_account_id,
            outcome.target_account_id == target_account_id,
            outcome.final_status == "completed",
            outcome.occurred_at <= parameters.now,
        )
        .label("counterparty_known"),
        exists().where(denied.account_id == source_account_id).label("source_denied"),
        exists().where(denied.account_id == target_account_id).label("target_denied"),
        features.c.first_seen_at,
        features.c.completed_transfers,
        features.c.amount_currency,
        features.c.amount_median_minor,
        features.c.amount_spread_minor,
        func.cardinality(features.c.amount_history).label("amount_sample_size"),
    ).select_from(aggregates.outerjoin(features, features.c.account_id == source_account_id))


FEATURES = _features_statement()


def features_parameters(
    *,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID | None,
    currency: str,
    round_multiple_minor: int,
    now: datetime,
) -> dict[str, object]:
    """The values of `FEATURES`' parameters for one source, currency and moment."""
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    assert round_multiple_minor > 0
    return {
        "source_account_id": source_account_id,
        "target_account_id": target_account_id,
        "currency": currency,
        "round_multiple_minor": round_multiple_minor,
        "now": now,
        "hour_start": now - timedelta(seconds=HOUR_SECONDS),
        "day_start": now - timedelta(seconds=DAY_SECONDS),
    }


async def read_features(
    session: AsyncSession,
    *,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID | None,
    currency: str,
    round_multiple_minor: int,
    now: datetime,
) -> FeatureSnapshot:
    """Everything scoring needs about the source (and target), in one round trip.

    Without a target, `counterparty_known` is None: the question was not asked.
    """
    parameters = features_parameters(
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        currency=currency,
        round_multiple_minor=round_multiple_minor,
        now=now,
    )
    row = (await session.execute(FEATURES, parameters)).one()
    return FeatureSnapshot(
        transfers_last_hour=int(row.transfers_last_hour),
        amount_last_hour_minor=_whole(row.amount_last_hour_minor),
        transfers_last_day=int(row.transfers_last_day),
        amount_last_day_minor=_whole(row.amount_last_day_minor),
        round_transfers_last_hour=int(row.round_transfers_last_hour),
        declines_last_day=int(row.declines_last_day),
        counterparty_known=None if target_account_id is None else bool(row.counterparty_known),
        source_denied=bool(row.source_denied),
        target_denied=bool(row.target_denied),
        first_seen_at=row.first_seen_at,
        completed_transfers=int(row.completed_transfers or 0),
        amount_currency=row.amount_currency,
        amount_median_minor=row.amount_median_minor,
        amount_spread_minor=row.amount_spread_minor,
        amount_sample_size=int(row.amount_sample_size or 0),
    )


# -- outcomes ----------------------------------------------------------------------------


async def get_outcome(session: AsyncSession, transfer_id: uuid.UUID) -> OutcomeRow | None:
    return (
        await session.execute(select(OutcomeRow).where(OutcomeRow.transfer_id == transfer_id))
    ).scalar_one_or_none()


async def insert_outcome(
    session: AsyncSession, *, report: OutcomeReport, recorded_at: datetime
) -> bool:
    """Insert unless the transfer has an outcome already; True when this call created it."""
    statement = (
        insert(OutcomeRow)
        .values(
            transfer_id=report.transfer_id,
            source_account_id=report.source_account_id,
            target_account_id=report.target_account_id,
            amount_minor=report.amount_minor,
            currency=report.currency,
            final_status=report.final_status,
            review_decision=report.review_decision,
            occurred_at=report.occurred_at,
            recorded_at=recorded_at,
        )
        .on_conflict_do_nothing(index_elements=[OutcomeRow.transfer_id])
        .returning(OutcomeRow.transfer_id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def leave_review_queue(session: AsyncSession, transfer_id: uuid.UUID) -> None:
    await session.execute(
        delete(PendingReviewRow).where(PendingReviewRow.transfer_id == transfer_id)
    )


async def see_account(
    session: AsyncSession, *, account_id: uuid.UUID, seen_at: datetime, now: datetime
) -> None:
    """Create the account's features row, or move its first sighting earlier; locks the row.

    Callers touching two accounts do so in id order, so two transfers between the same
    pair, in opposite directions, cannot deadlock.
    """
    features = AccountFeaturesRow.__table__
    statement = insert(AccountFeaturesRow).values(
        account_id=account_id, first_seen_at=seen_at, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[AccountFeaturesRow.account_id],
        set_={
            "first_seen_at": func.least(features.c.first_seen_at, statement.excluded.first_seen_at),
            "updated_at": statement.excluded.updated_at,
        },
    )
    await session.execute(statement)


async def read_amount_history(
    session: AsyncSession, account_id: uuid.UUID
) -> tuple[str | None, list[int]]:
    """The account's amount history and its currency; the caller already holds the row lock."""
    row = (
        await session.execute(
            select(AccountFeaturesRow.amount_currency, AccountFeaturesRow.amount_history)
            .where(AccountFeaturesRow.account_id == account_id)
            .with_for_update()
        )
    ).one()
    return row.amount_currency, list(row.amount_history)


async def write_amount_history(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str,
    history: list[int],
    median_minor: int,
    spread_minor: int,
    now: datetime,
) -> None:
    await session.execute(
        update(AccountFeaturesRow)
        .where(AccountFeaturesRow.account_id == account_id)
        .values(
            completed_transfers=AccountFeaturesRow.completed_transfers + 1,
            amount_currency=currency,
            amount_history=history,
            amount_median_minor=median_minor,
            amount_spread_minor=spread_minor,
            updated_at=now,
        )
    )


# -- review queue ------------------------------------------------------------------------


async def list_reviews(
    session: AsyncSession, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[ScoreRow]:
    """Scores waiting in the review queue, oldest first, after the cursor position."""
    statement = (
        select(ScoreRow)
        .join(PendingReviewRow, PendingReviewRow.transfer_id == ScoreRow.transfer_id)
        .order_by(PendingReviewRow.scored_at, PendingReviewRow.transfer_id)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(
            tuple_(PendingReviewRow.scored_at, PendingReviewRow.transfer_id) > tuple_(*after)
        )
    return list((await session.execute(statement)).scalars())


# -- rule statistics ---------------------------------------------------------------------

# Both filter scores by the period, and by ruleset version when one is asked for.
_RULE_STATS = """
    SELECT reason ->> 'code' AS code,
           count(*) AS fired,
           count(o.transfer_id) AS with_outcome,
           count(*) FILTER (WHERE o.final_status = 'completed') AS completed,
           count(*) FILTER (WHERE o.final_status = 'declined') AS declined,
           count(*) FILTER (WHERE o.review_decision IS NOT NULL) AS reviewed,
           count(*) FILTER (WHERE o.review_decision = 'approve') AS review_approved,
           count(*) FILTER (WHERE o.review_decision = 'reject') AS review_rejected
    FROM scores AS s
    CROSS JOIN LATERAL jsonb_array_elements(s.reasons) AS reason
    LEFT JOIN outcomes AS o ON o.transfer_id = s.transfer_id
    WHERE s.created_at >= :since AND s.created_at <= :until {version_filter}
    GROUP BY reason ->> 'code'
    ORDER BY reason ->> 'code'
    LIMIT 100
"""
_SCORE_TOTALS = """
    SELECT count(*) AS scored, count(o.transfer_id) AS with_outcome
    FROM scores AS s
    LEFT JOIN outcomes AS o ON o.transfer_id = s.transfer_id
    WHERE s.created_at >= :since AND s.created_at <= :until {version_filter}
"""
_VERSION_FILTER = "AND s.ruleset_version = :ruleset_version"


@dataclass(frozen=True)
class RuleCounts:
    code: str
    fired: int
    with_outcome: int
    completed: int
    declined: int
    reviewed: int
    review_approved: int
    review_rejected: int


async def rule_stats(
    session: AsyncSession, *, ruleset_version: str | None, since: datetime, until: datetime
) -> tuple[int, int, list[RuleCounts]]:
    """(scores in the period, of which with an outcome, per-rule counts)."""
    parameters: dict[str, object] = {"since": since, "until": until}
    version_filter = ""
    if ruleset_version is not None:
        parameters["ruleset_version"] = ruleset_version
        version_filter = _VERSION_FILTER
    totals_query = text(_SCORE_TOTALS.format(version_filter=version_filter))
    totals = (await session.execute(totals_query, parameters)).one()
    rows = await session.execute(
        text(_RULE_STATS.format(version_filter=version_filter)), parameters
    )
    counts = [
        RuleCounts(
            code=str(row.code),
            fired=int(row.fired),
            with_outcome=int(row.with_outcome),
            completed=int(row.completed),
            declined=int(row.declined),
            reviewed=int(row.reviewed),
            review_approved=int(row.review_approved),
            review_rejected=int(row.review_rejected),
        )
        for row in rows
    ]
    return int(totals.scored), int(totals.with_outcome), counts


# -- deny-list ---------------------------------------------------------------------------


async def get_denied(session: AsyncSession, account_id: uuid.UUID) -> DeniedAccountRow | None:
    return (
        await session.execute(
            select(DeniedAccountRow).where(DeniedAccountRow.account_id == account_id)
        )
    ).scalar_one_or_none()


async def insert_denied(
    session: AsyncSession, *, account_id: uuid.UUID, entry: DenyListEntryCreate, now: datetime
) -> bool:
    """List the account unless it is listed already; True when this call listed it."""
    statement = (
        insert(DeniedAccountRow)
        .values(
            account_id=account_id, reason=entry.reason, listed_by=entry.listed_by, listed_at=now
        )
        .on_conflict_do_nothing(index_elements=[DeniedAccountRow.account_id])
        .returning(DeniedAccountRow.account_id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def delete_denied(session: AsyncSession, account_id: uuid.UUID) -> DeniedAccountRow | None:
    """Remove the account from the deny-list; the removed entry, or None if it was absent."""
    statement = (
        delete(DeniedAccountRow)
        .where(DeniedAccountRow.account_id == account_id)
        .returning(DeniedAccountRow)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def list_denied(
    session: AsyncSession, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[DeniedAccountRow]:
    statement = (
        select(DeniedAccountRow)
        .order_by(DeniedAccountRow.listed_at, DeniedAccountRow.account_id)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(
            tuple_(DeniedAccountRow.listed_at, DeniedAccountRow.account_id) > tuple_(*after)
        )
    return list((await session.execute(statement)).scalars())


# -- audit -------------------------------------------------------------------------------


async def append_audit(session: AsyncSession, event: AuditEventCreate) -> bool:
    """Append to the audit chain in the session's transaction; False if the id was known."""
    _values, written = await audit.append(session, audit_events, event)
    return written
