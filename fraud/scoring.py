"""Pure scoring: a ruleset, a request and its features in; score, decision and reasons out.

No SQLAlchemy, no FastAPI, no clock: everything the rules look at arrives as arguments.
The typical-amount statistics (median and spread of a bounded history) live here too, so
the outcome path and the tests compute them the same way.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from contracts.fraud import SCORE_MAX, FraudDecision, FraudRuleCode, ScoreReason, ScoreRequest
from contracts.money import Money, minor_unit_exponent
from fraud.ruleset import AMOUNT_HISTORY_MAX, AmountRule, Ruleset

HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS


@dataclass(frozen=True)
class TypicalAmount:
    """The median of an account's last completed amounts and their spread, one currency."""

    median_minor: int
    # The median absolute deviation: robust where a standard deviation is not (one huge
    # transfer in the history barely moves it).
    spread_minor: int
    sample_size: int

    def __post_init__(self) -> None:
        assert self.median_minor > 0, "amounts are positive, so is their median"
        assert self.spread_minor >= 0
        assert 0 < self.sample_size <= AMOUNT_HISTORY_MAX


@dataclass(frozen=True)
class Features:
    """What the fraud database knows about the source account (and the target) at scoring.

    Defaults describe an account the service has never seen, with no recent transfers.
    """

    # The source's transfers in the last hour and day: scored and still in flight, or
    # completed. Sums are in the request's currency (other currencies do not add up).
    transfers_last_hour: int = 0
    amount_last_hour_minor: int = 0
    transfers_last_day: int = 0
    amount_last_day_minor: int = 0
    # Of the last hour's, those in the request's currency with a round amount.
    round_transfers_last_hour: int = 0
    # The source's declined transfers in the last day (by score or by a reviewer).
    declines_last_day: int = 0
    # The source already has a completed transfer to this target.
    counterparty_known: bool = False
    # Seconds since the source was first seen in a finished transfer; None: never.
    source_age_seconds: int | None = None
    # The source's typical amount in the request's currency; None: no history in it.
    typical: TypicalAmount | None = None
    source_denied: bool = False
    target_denied: bool = False

    def __post_init__(self) -> None:
        assert self.transfers_last_hour >= 0, "a count cannot be negative"
        assert self.transfers_last_day >= self.transfers_last_hour, "an hour is within a day"
        assert self.amount_last_hour_minor >= 0, "a sum of positive amounts is not negative"
        assert self.amount_last_day_minor >= self.amount_last_hour_minor
        assert 0 <= self.round_transfers_last_hour <= self.transfers_last_hour
        assert self.declines_last_day >= 0
        assert self.source_age_seconds is None or self.source_age_seconds >= 0


class Evaluation(NamedTuple):
    score: int
    decision: FraudDecision
    reasons: list[ScoreReason]


def median_minor(amounts: Sequence[int]) -> int:
    """The median, rounded down to a whole minor unit when it falls between two amounts."""
    assert amounts, "the median of nothing is undefined"
    ordered = sorted(amounts)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def typical_amount(amounts: Sequence[int]) -> TypicalAmount | None:
    """Median and median absolute deviation of `amounts`; None for an empty history."""
    if not amounts:
        return None
    assert len(amounts) <= AMOUNT_HISTORY_MAX, "the history is bounded"
    median = median_minor(amounts)
    spread = median_minor([abs(amount - median) for amount in amounts])
    return TypicalAmount(median_minor=median, spread_minor=spread, sample_size=len(amounts))


def remember_amount(history: Sequence[int], amount_minor: int) -> list[int]:
    """The history with `amount_minor` appended, keeping only the newest entries."""
    assert amount_minor > 0, "only completed transfers, which have positive amounts"
    return [*history, amount_minor][-AMOUNT_HISTORY_MAX:]


def round_multiple_minor(ruleset: Ruleset, currency: str) -> int:
    """The round-amount rule's multiple in minor units of `currency`."""
    scale: int = 10 ** minor_unit_exponent(currency)
    return ruleset.rules.round_amount.multiple_major * scale


def format_money(amount_minor: int, currency: str) -> str:
    """`Money.format()` for figures the engine computed itself (a sum may be 0 or exceed a
    single transfer's maximum), so they skip the request-side validation."""
    assert amount_minor >= 0, "the figures in reasons are never negative"
    return Money.model_construct(amount_minor=amount_minor, currency=currency).format()


def format_age(seconds: int) -> str:
    assert seconds >= 0
    if seconds >= DAY_SECONDS:
        days = seconds // DAY_SECONDS
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds >= HOUR_SECONDS:
        hours = seconds // HOUR_SECONDS
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def decide(ruleset: Ruleset, score: int) -> FraudDecision:
    if score >= ruleset.decline_at:
        return FraudDecision.decline
    if score >= ruleset.review_at:
        return FraudDecision.review
    return FraudDecision.approve


def _deny_list(ruleset: Ruleset, features: Features) -> ScoreReason | None:
    # The text names which side is listed, never why: reasons may reach the customer.
    if features.source_denied and features.target_denied:
        text = "Both the source account and the recipient account are on the deny-list."
    elif features.source_denied:
        text = "The source account is on the deny-list."
    elif features.target_denied:
        text = "The recipient account is on the deny-list."
    else:
        return None
    return ScoreReason(
        code=FraudRuleCode.deny_list, text=text, points=ruleset.rules.deny_list.points
    )


def _amount_at_least(
    rule: AmountRule, code: FraudRuleCode, threshold_name: str, request: ScoreRequest
) -> ScoreReason | None:
    """The reason of an amount rule (`large_amount`, `very_large_amount`): fires when the
    amount is at least the rule's threshold for its currency."""
    threshold_minor = rule.threshold_minor[request.currency]
    if request.amount_minor < threshold_minor:
        return None
    return ScoreReason(
        code=code,
        text=(
            f"The amount {format_money(request.amount_minor, request.currency)} is at least "
            f"the {threshold_name} threshold of "
            f"{format_money(threshold_minor, request.currency)}."
        ),
        points=rule.points,
    )


def _velocity(ruleset: Ruleset, request: ScoreRequest, features: Features) -> ScoreReason | None:
    rule = ruleset.rules.velocity
    if features.transfers_last_hour >= rule.hour_transfers_min:
        count, amount_minor, window, count_min = (
            features.transfers_last_hour,
            features.amount_last_hour_minor,
            "60 minutes",
            rule.hour_transfers_min,
        )
    elif features.transfers_last_day >= rule.day_transfers_min:
        count, amount_minor, window, count_min = (
            features.transfers_last_day,
            features.amount_last_day_minor,
            "24 hours",
            rule.day_transfers_min,
        )
    else:
        return None
    total = format_money(amount_minor, request.currency)
    return ScoreReason(
        code=FraudRuleCode.velocity,
        text=(
            f"The source account already had {count} transfers in the last {window} "
            f"({total} in {request.currency}); {count_min} or more count as unusually "
            "frequent."
        ),
        points=rule.points,
    )


def _amount_above_typical(
    ruleset: Ruleset, request: ScoreRequest, features: Features
) -> ScoreReason | None:
    rule = ruleset.rules.amount_above_typical
    typical = features.typical
    if typical is None or typical.sample_size < rule.history_min:
        return None
    if request.amount_minor < typical.median_minor * rule.median_multiple:
        return None
    if request.amount_minor <= typical.median_minor + typical.spread_minor * rule.spread_multiple:
        return None
    return ScoreReason(
        code=FraudRuleCode.amount_above_typical,
        text=(
            f"The amount {format_money(request.amount_minor, request.currency)} is at least "
            f"{rule.median_multiple} times the account's typical amount of "
            f"{format_money(typical.median_minor, request.currency)} (the median of its last "
            f"{typical.sample_size} completed transfers, spread "
            f"{format_money(typical.spread_minor, request.currency)})."
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


def _brand_new_account(
    ruleset: Ruleset, request: ScoreRequest, features: Features
) -> ScoreReason | None:
    rule = ruleset.rules.brand_new_account
    threshold_minor = rule.threshold_minor[request.currency]
    if request.amount_minor < threshold_minor:
        return None
    age_seconds = features.source_age_seconds
    if age_seconds is not None and age_seconds >= rule.age_seconds_max:
        return None
    seen = (
        "has no finished transfer yet"
        if age_seconds is None
        else f"was first seen {format_age(age_seconds)} ago"
    )
    return ScoreReason(
        code=FraudRuleCode.brand_new_account,
        text=(
            f"The source account {seen} (new accounts are those younger than "
            f"{format_age(rule.age_seconds_max)}), and the amount "
            f"{format_money(request.amount_minor, request.currency)} is at least "
            f"{format_money(threshold_minor, request.currency)}."
        ),
        points=rule.points,
    )


def _recent_declines(ruleset: Ruleset, features: Features) -> ScoreReason | None:
    rule = ruleset.rules.recent_declines
    if features.declines_last_day < rule.declines_min:
        return None
    return ScoreReason(
        code=FraudRuleCode.recent_declines,
        text=(
            f"The source account had {features.declines_last_day} declined transfers in the "
            f"last 24 hours; {rule.declines_min} or more count as a warning sign."
        ),
        points=rule.points,
    )


def _round_amount(
    ruleset: Ruleset, request: ScoreRequest, features: Features
) -> ScoreReason | None:
    rule = ruleset.rules.round_amount
    multiple_minor = round_multiple_minor(ruleset, request.currency)
    if request.amount_minor % multiple_minor != 0:
        return None
    if features.round_transfers_last_hour < rule.earlier_transfers_min:
        return None
    text = (
        f"The amount {format_money(request.amount_minor, request.currency)} is a whole "
        f"multiple of {format_money(multiple_minor, request.currency)}"
    )
    if rule.earlier_transfers_min > 0:
        text += (
            f", after {features.round_transfers_last_hour} such round amounts from the source "
            "account in the last 60 minutes"
        )
    return ScoreReason(code=FraudRuleCode.round_amount, text=f"{text}.", points=rule.points)


def evaluate(ruleset: Ruleset, request: ScoreRequest, features: Features) -> Evaluation:
    """Score a transfer: the points of every rule that fires, capped at `SCORE_MAX`.

    Reasons come in a fixed rule order, one per rule that fired, each with its points.
    """
    fired = [
        _deny_list(ruleset, features),
        _amount_at_least(
            ruleset.rules.very_large_amount,
            FraudRuleCode.very_large_amount,
            "very-large-transfer",
            request,
        ),
        _amount_at_least(
            ruleset.rules.large_amount, FraudRuleCode.large_amount, "large-transfer", request
        ),
        _velocity(ruleset, request, features),
        _amount_above_typical(ruleset, request, features),
        _first_counterparty_large(ruleset, request, features),
        _brand_new_account(ruleset, request, features),
        _recent_declines(ruleset, features),
        _round_amount(ruleset, request, features),
    ]
    reasons = [reason for reason in fired if reason is not None]
    score = min(sum(reason.points for reason in reasons), SCORE_MAX)
    assert 0 <= score <= SCORE_MAX
    return Evaluation(score=score, decision=decide(ruleset, score), reasons=reasons)
