"""Use cases of the fraud service."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.fraud import (
    FraudDecision,
    FraudRuleCode,
    RuleDescription,
    RulesetDescription,
    Score,
    ScoreReason,
    ScoreRequest,
)
from fraud import repository, scoring
from fraud.errors import ScoreNotFound, ScoreRequestMismatch
from fraud.models import ScoreRow
from fraud.ruleset import Ruleset

log = structlog.get_logger()

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _to_contract(row: ScoreRow) -> Score:
    return Score(
        transfer_id=row.transfer_id,
        score=row.score,
        decision=FraudDecision(row.decision),
        reasons=[ScoreReason.model_validate(reason) for reason in row.reasons],
        ruleset_version=row.ruleset_version,
        created_at=row.created_at,
    )


def _mismatched_fields(row: ScoreRow, request: ScoreRequest) -> list[str]:
    stored = {
        "source_account_id": row.source_account_id,
        "target_account_id": row.target_account_id,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
    }
    return [name for name, value in stored.items() if getattr(request, name) != value]


def _replay(row: ScoreRow, request: ScoreRequest) -> Score:
    mismatched = _mismatched_fields(row, request)
    if mismatched:
        raise ScoreRequestMismatch(
            f"transfer {request.transfer_id} was scored with other "
            f"{', '.join(mismatched)}; a transfer's details cannot change",
            fields=mismatched,
        )
    return _to_contract(row)


async def score_transfer(
    session: AsyncSession, *, request: ScoreRequest, ruleset: Ruleset, now: datetime
) -> tuple[Score, bool]:
    """Score a transfer once; True when this call scored it.

    Scoring it again returns the stored score unchanged, whatever the ruleset or the
    account's history says now: the saga must see the verdict it acted on.
    """
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    stored = await repository.get_score(session, request.transfer_id)
    if stored is not None:
        return _replay(stored, request), False

    features = await repository.read_features(
        session,
        source_account_id=request.source_account_id,
        target_account_id=request.target_account_id,
        currency=request.currency,
        window_start=now - timedelta(seconds=ruleset.rules.velocity.window_seconds),
        now=now,
    )
    evaluation = scoring.evaluate(ruleset, request, features)
    # Two first requests for one transfer may race here; the loser's insert does nothing
    # and it answers with the winner's row, exactly like a later retry.
    created = await repository.insert_score(
        session,
        request=request,
        evaluation=evaluation,
        ruleset_version=ruleset.version,
        created_at=now,
    )
    row = await repository.get_score(session, request.transfer_id)
    assert row is not None, "the score was just inserted or already existed"
    if not created:
        return _replay(row, request), False
    log.info(
        "score.created",
        transfer_id=str(request.transfer_id),
        score=evaluation.score,
        decision=evaluation.decision.value,
        reason_codes=[reason.code for reason in evaluation.reasons],
        ruleset_version=ruleset.version,
    )
    return _to_contract(row), True


async def get_score(session: AsyncSession, *, transfer_id: uuid.UUID) -> Score:
    row = await repository.get_score(session, transfer_id)
    if row is None:
        raise ScoreNotFound(f"no score for transfer {transfer_id}")
    return _to_contract(row)


def describe_ruleset(ruleset: Ruleset) -> RulesetDescription:
    """The live ruleset as operators read it: thresholds, and each rule's parameters."""
    rules = ruleset.rules
    return RulesetDescription(
        version=ruleset.version,
        review_at=ruleset.review_at,
        decline_at=ruleset.decline_at,
        rules=[
            RuleDescription(
                code=FraudRuleCode.very_large_amount,
                description="The amount is at least the very-large threshold of its currency.",
                points=rules.very_large_amount.points,
                parameters={"threshold_minor": dict(rules.very_large_amount.threshold_minor)},
            ),
            RuleDescription(
                code=FraudRuleCode.large_amount,
                description="The amount is at least the large threshold of its currency.",
                points=rules.large_amount.points,
                parameters={"threshold_minor": dict(rules.large_amount.threshold_minor)},
            ),
            RuleDescription(
                code=FraudRuleCode.velocity,
                description=(
                    "The source account already had at least `transfers_min` transfers "
                    "scored in the last `window_seconds`."
                ),
                points=rules.velocity.points,
                parameters={
                    "transfers_min": rules.velocity.transfers_min,
                    "window_seconds": rules.velocity.window_seconds,
                },
            ),
            RuleDescription(
                code=FraudRuleCode.first_counterparty_large,
                description=(
                    "The source has no approved transfer to this target yet, and the amount "
                    "is at least the threshold of its currency."
                ),
                points=rules.first_counterparty_large.points,
                parameters={
                    "threshold_minor": dict(rules.first_counterparty_large.threshold_minor)
                },
            ),
            RuleDescription(
                code=FraudRuleCode.round_amount,
                description="The amount is a whole multiple of `multiple_major` major units.",
                points=rules.round_amount.points,
                parameters={"multiple_major": rules.round_amount.multiple_major},
            ),
        ],
    )
