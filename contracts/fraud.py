"""Fraud service wire contracts: scoring requests and explainable scores."""

import enum
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.common import Identifier, StrictModel
from contracts.money import AmountMinor, CurrencyCode

SCORES_PATH = "/v1/scores"

SCORE_MAX = 1000


class FraudProblem(enum.StrEnum):
    """The fraud service's own problem slugs (the generic ones: `CommonProblem`)."""

    score_request_mismatch = "score-request-mismatch"
    score_not_found = "score-not-found"
    outcome_conflict = "outcome-conflict"
    outcome_score_mismatch = "outcome-score-mismatch"
    timezone_required = "timezone-required"
    invalid_period = "invalid-period"
    deny_list_entry_not_found = "deny-list-entry-not-found"
    listed_by_mismatch = "listed-by-mismatch"


class FraudDecision(enum.StrEnum):
    approve = "approve"
    review = "review"
    decline = "decline"


class ScoreRequest(StrictModel):
    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode


class ScoreReason(BaseModel):
    code: str = Field(max_length=64)
    text: str = Field(max_length=300)
    points: int


class Score(BaseModel):
    """A stored score: scoring the same transfer again returns this same document."""

    transfer_id: UUID
    score: int = Field(ge=0, le=SCORE_MAX)
    decision: FraudDecision
    reasons: list[ScoreReason]
    ruleset_version: str = Field(max_length=64)
    created_at: datetime


RULESET_CURRENT_PATH = "/v1/rulesets/current"


class FraudRuleCode(enum.StrEnum):
    """The stable code of each rule; a `ScoreReason.code` is one of these."""

    large_amount = "large_amount"
    very_large_amount = "very_large_amount"
    velocity = "velocity"
    first_counterparty_large = "first_counterparty_large"
    round_amount = "round_amount"
    amount_above_typical = "amount_above_typical"
    brand_new_account = "brand_new_account"
    recent_declines = "recent_declines"
    deny_list = "deny_list"


# A rule parameter: a count, a duration, or per-currency thresholds in minor units.
RuleParameter = int | dict[str, int]


class RuleDescription(BaseModel):
    """One rule of the live ruleset: what it looks at, its parameters and its points."""

    code: FraudRuleCode
    description: str = Field(max_length=300)
    points: int = Field(ge=0, le=SCORE_MAX)
    parameters: dict[str, RuleParameter] = Field(max_length=20)


class RulesetDescription(BaseModel):
    """The ruleset scoring new transfers; a stored score keeps the version that made it."""

    version: str = Field(max_length=64)
    review_at: int = Field(ge=1, le=SCORE_MAX)
    decline_at: int = Field(ge=1, le=SCORE_MAX)
    score_max: int = SCORE_MAX
    rules: list[RuleDescription] = Field(max_length=50)


OUTCOMES_PATH = "/v1/outcomes"


class OutcomeReport(StrictModel):
    """How a scored transfer ended, reported once by the saga; idempotent on `transfer_id`.

    Feeds the per-account features (only `completed` transfers move money) and the
    per-rule precision (a reviewer's verdict and the final status, against the score).
    """

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode
    final_status: str = Field(
        pattern=r"^(completed|rejected|declined|expired|cancelled)$", max_length=20
    )
    review_decision: str | None = Field(default=None, pattern=r"^(approve|reject)$")
    occurred_at: datetime


# -- added for the fraud service's features, review queue, statistics and deny-list --------

ACCOUNT_FEATURES_PATH = "/v1/admin/accounts/{account_id}/features"
REVIEWS_PATH = "/v1/reviews"
RULE_STATS_PATH = "/v1/admin/rules/stats"
DENY_LIST_PATH = "/v1/admin/deny-list"
SHADOW_COMPARISON_PATH = "/v1/admin/shadow/comparison"
SHADOW_SCORES_PATH = "/v1/scores/{transfer_id}/shadow"


class AccountFeatures(BaseModel):
    """What scoring a transfer from this account, in `currency`, would see right now.

    Window counts include the account's transfers still in flight (scored, no outcome
    yet); sums are in `currency` only. The typical amount is the median of the account's
    last completed transfers, with its spread (median absolute deviation).
    """

    account_id: UUID
    currency: CurrencyCode
    as_of: datetime
    first_seen_at: datetime | None
    age_seconds: int | None = Field(ge=0)
    transfers_last_hour: int = Field(ge=0)
    amount_last_hour_minor: int = Field(ge=0)
    transfers_last_day: int = Field(ge=0)
    amount_last_day_minor: int = Field(ge=0)
    round_transfers_last_hour: int = Field(ge=0)
    declines_last_day: int = Field(ge=0)
    completed_transfers: int = Field(ge=0)
    typical_amount_minor: int | None = Field(ge=0)
    typical_spread_minor: int | None = Field(ge=0)
    typical_sample_size: int = Field(ge=0)
    counterparty_known: bool | None = None
    denied: bool


class ReviewItem(BaseModel):
    """A transfer the fraud service sent to review that has no final outcome yet."""

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str = Field(max_length=3)
    score: int = Field(ge=0, le=SCORE_MAX)
    reasons: list[ScoreReason]
    ruleset_version: str = Field(max_length=64)
    scored_at: datetime


class RuleStats(BaseModel):
    """How one rule fared: how often it fired, and what became of those transfers.

    `precision` is the share of the reviewed transfers on which the rule fired that the
    reviewer rejected: the one verdict on which a human confirmed or refuted the alarm.
    None until a reviewed transfer has an outcome.
    """

    code: str = Field(max_length=64)
    fired: int = Field(ge=0)
    with_outcome: int = Field(ge=0)
    completed: int = Field(ge=0)
    declined: int = Field(ge=0)
    reviewed: int = Field(ge=0)
    review_approved: int = Field(ge=0)
    review_rejected: int = Field(ge=0)
    precision: float | None = Field(default=None, ge=0, le=1)


class RuleStatsReport(BaseModel):
    ruleset_version: str | None = Field(max_length=64)
    scored_since: datetime
    scored_until: datetime
    scored: int = Field(ge=0)
    with_outcome: int = Field(ge=0)
    rules: list[RuleStats] = Field(max_length=100)


class DenyListEntryCreate(StrictModel):
    reason: str = Field(min_length=1, max_length=300)
    listed_by: Identifier


class DenyListEntry(BaseModel):
    account_id: UUID
    reason: str = Field(max_length=300)
    listed_by: str = Field(max_length=64)
    listed_at: datetime


class ShadowScore(BaseModel):
    """A shadow ruleset's verdict on a transfer, recorded beside the live one it never changed."""

    transfer_id: UUID
    ruleset_version: str = Field(max_length=64)
    score: int = Field(ge=0, le=SCORE_MAX)
    decision: FraudDecision
    reasons: list[ScoreReason]
    live_ruleset_version: str = Field(max_length=64)
    live_decision: FraudDecision
    created_at: datetime


class DecisionPair(BaseModel):
    live: FraudDecision
    shadow: FraudDecision
    count: int = Field(ge=0)


class ShadowComparison(BaseModel):
    """Live and shadow decisions side by side over a period: how often they agree."""

    shadow_ruleset_version: str | None = Field(max_length=64)
    scored_since: datetime
    scored_until: datetime
    evaluated: int = Field(ge=0)
    agreed: int = Field(ge=0)
    pairs: list[DecisionPair] = Field(max_length=9)
