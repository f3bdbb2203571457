"""Pure scoring: a ruleset, a request and its features in; score, decision and reasons out.

No SQLAlchemy, no FastAPI, no clock: everything the rules look at arrives as arguments.
"""

from dataclasses import dataclass
from typing import NamedTuple

from contracts.fraud import SCORE_MAX, FraudDecision, FraudRuleCode, ScoreReason, ScoreRequest
from contracts.money import Money, minor_unit_exponent
from fraud.ruleset import Ruleset


@dataclass(frozen=True)
class Features:
    """What the database knows about the source account at scoring time."""

    # Transfers scored for the source within the velocity window, in any currency.
    recent_transfer_count: int
    # Their sum in the request's currency (amounts in other currencies do not add up).
    recent_amount_minor: int
    # The source already has an approved transfer to this target.
    counterparty_known: bool

    def __post_init__(self) -> None:
        assert self.recent_transfer_count >= 0, "a count cannot be negative"
        assert self.recent_amount_minor >= 0, "a sum of positive amounts cannot be negative"


class Evaluation(NamedTuple):
    score: int
    decision: FraudDecision
    reasons: list[ScoreReason]


def format_money(amount_minor: int, currency: str) -> str:
    """`Money.format()` for figures the engine computed itself (a sum may be 0 or exceed a
    single transfer's maximum), so they skip the request-side validation."""
    assert amount_minor >= 0, "the figures in reasons are never negative"
    return Money.model_construct(amount_minor=amount_minor, currency=currency).format()


def decide(ruleset: Ruleset, score: int) -> FraudDecision:
    if score >= ruleset.decline_at:
        return FraudDecision.decline
    if score >= ruleset.review_at:
        return FraudDecision.review
    return FraudDecision.approve


def _large_amount(ruleset: Ruleset, request: ScoreRequest) -> ScoreReason | None:
    rule = ruleset.rules.large_amount
    threshold_minor = rule.threshold_minor[request.currency]
    if request.amount_minor < threshold_minor:
        return None
    return ScoreReason(
        code=FraudRuleCode.large_amount,
        text=(
            f"The amount {format_money(request.amount_minor, request.currency)} is at least "
            f"the large-transfer threshold of {format_money(threshold_minor, request.currency)}."
        ),
        points=rule.points,
    )


def _very_large_amount(ruleset: Ruleset, request: ScoreRequest) -> ScoreReason | None:
    rule = ruleset.rules.very_large_amount
    threshold_minor = rule.threshold_minor[request.currency]
    if request.amount_minor < threshold_minor:
        return None
    return ScoreReason(
        code=FraudRuleCode.very_large_amount,
        text=(
            f"The amount {format_money(request.amount_minor, request.currency)} is at least "
            "the very-large-transfer threshold of "
            f"{format_money(threshold_minor, request.currency)}."
        ),
        points=rule.points,
    )


def _velocity(ruleset: Ruleset, request: ScoreRequest, features: Features) -> ScoreReason | None:
    rule = ruleset.rules.velocity
    if features.recent_transfer_count < rule.transfers_min:
        return None
    window_minutes = rule.window_seconds // 60
    total = format_money(features.recent_amount_minor, request.currency)
    return ScoreReason(
        code=FraudRuleCode.velocity,
        text=(
            f"The source account already had {features.recent_transfer_count} transfers in "
            f"the last {window_minutes} minutes ({total} in {request.currency}); "
            f"{rule.transfers_min} or more count as unusually frequent."
        ),
        points=rule.points,
    )


def _first_counterparty_large(
    ruleset: Ruleset, request: ScoreRequest, features: Features
) -> ScoreReason | None:
    rule = ruleset.rules.first_counterparty_large
    threshold_minor = rule.threshold_minor[request.currency]
    if features.counterparty_known or request.amount_minor < threshold_minor:
        return None
    return ScoreReason(
        code=FraudRuleCode.first_counterparty_large,
        text=(
            "This is the first transfer from the source account to this recipient, and "
            f"its amount {format_money(request.amount_minor, request.currency)} is at least "
            f"{format_money(threshold_minor, request.currency)}."
        ),
        points=rule.points,
    )


def _round_amount(ruleset: Ruleset, request: ScoreRequest) -> ScoreReason | None:
    rule = ruleset.rules.round_amount
    multiple_minor = rule.multiple_major * 10 ** minor_unit_exponent(request.currency)
    if request.amount_minor % multiple_minor != 0:
        return None
    return ScoreReason(
        code=FraudRuleCode.round_amount,
        text=(
            f"The amount {format_money(request.amount_minor, request.currency)} is a whole "
            f"multiple of {format_money(multiple_minor, request.currency)}."
        ),
        points=rule.points,
    )


def evaluate(ruleset: Ruleset, request: ScoreRequest, features: Features) -> Evaluation:
    """Score a transfer: the points of every rule that fires, capped at `SCORE_MAX`.

    Reasons come in a fixed rule order, one per rule that fired, each with its points.
    """
    fired = [
        _very_large_amount(ruleset, request),
        _large_amount(ruleset, request),
        _velocity(ruleset, request, features),
        _first_counterparty_large(ruleset, request, features),
        _round_amount(ruleset, request),
    ]
    reasons = [reason for reason in fired if reason is not None]
    score = min(sum(reason.points for reason in reasons), SCORE_MAX)
    assert 0 <= score <= SCORE_MAX
    return Evaluation(score=score, decision=decide(ruleset, score), reasons=reasons)
