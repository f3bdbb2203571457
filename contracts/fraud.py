"""Fraud service wire contracts: scoring requests and explainable scores."""

import enum
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import Identifier, StrictModel
from contracts.examples import (
    EXAMPLE_LATER_TIME,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
)
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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "score": 300,
                    "decision": "approve",
                    "reasons": [
                        {
                            "code": "large_amount",
                            "text": "The amount is above 1,000.00 EUR.",
                            "points": 300,
                        }
                    ],
                    "ruleset_version": "2026.11.2",
                    "created_at": EXAMPLE_TIME,
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "2026.11.2",
                    "review_at": 500,
                    "decline_at": 800,
                    "score_max": 1000,
                    "rules": [
                        {
                            "code": "large_amount",
                            "description": "The amount is at or above a per-currency threshold.",
                            "points": 300,
                            "parameters": {"threshold_minor": {"EUR": 100000, "USD": 100000}},
                        }
                    ],
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "final_status": "completed",
                    "review_decision": "approve",
                    "occurred_at": EXAMPLE_LATER_TIME,
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "currency": "EUR",
                    "as_of": EXAMPLE_TIME,
                    "first_seen_at": "2026-03-14T10:02:00Z",
                    "age_seconds": 22980000,
                    "transfers_last_hour": 1,
                    "amount_last_hour_minor": 125000,
                    "transfers_last_day": 3,
                    "amount_last_day_minor": 158000,
                    "round_transfers_last_hour": 0,
                    "declines_last_day": 0,
                    "completed_transfers": 57,
                    "typical_amount_minor": 4200,
                    "typical_spread_minor": 1800,
                    "typical_sample_size": 50,
                    "counterparty_known": True,
                    "denied": False,
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 950000,
                    "currency": "EUR",
                    "score": 620,
                    "reasons": [
                        {
                            "code": "very_large_amount",
                            "text": "The amount is above 5,000.00 EUR.",
                            "points": 620,
                        }
                    ],
                    "ruleset_version": "2026.11.2",
                    "scored_at": EXAMPLE_TIME,
                }
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ruleset_version": "2026.11.2",
                    "scored_since": "2026-11-01T00:00:00Z",
                    "scored_until": "2026-12-01T00:00:00Z",
                    "scored": 18240,
                    "with_outcome": 18102,
                    "rules": [
                        {
                            "code": "large_amount",
                            "fired": 412,
                            "with_outcome": 409,
                            "completed": 371,
                            "declined": 12,
                            "reviewed": 38,
                            "review_approved": 30,
                            "review_rejected": 8,
                            "precision": 0.21,
                        }
                    ],
                }
            ]
        }
    )

    ruleset_version: str | None = Field(max_length=64)
    scored_since: datetime
    scored_until: datetime
    scored: int = Field(ge=0)
    with_outcome: int = Field(ge=0)
    rules: list[RuleStats] = Field(max_length=100)


class DenyListEntryCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reason": "Mule account reported by the police", "listed_by": "grace.hopper"}
            ]
        }
    )

    reason: str = Field(min_length=1, max_length=300)
    listed_by: Identifier


class DenyListEntry(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "reason": "Mule account reported by the police",
                    "listed_by": "grace.hopper",
                    "listed_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    account_id: UUID
    reason: str = Field(max_length=300)
    listed_by: str = Field(max_length=64)
    listed_at: datetime


class ShadowScore(BaseModel):
    """A shadow ruleset's verdict on a transfer, recorded beside the live one it never changed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "ruleset_version": "2026.12.0",
                    "score": 520,
                    "decision": "review",
                    "reasons": [
                        {
                            "code": "amount_above_typical",
                            "text": "The amount is far above the account's typical transfer.",
                            "points": 520,
                        }
                    ],
                    "live_ruleset_version": "2026.11.2",
                    "live_decision": "approve",
                    "created_at": EXAMPLE_TIME,
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shadow_ruleset_version": "2026.12.0",
                    "scored_since": "2026-11-01T00:00:00Z",
                    "scored_until": "2026-12-01T00:00:00Z",
                    "evaluated": 18240,
                    "agreed": 18191,
                    "pairs": [
                        {"live": "approve", "shadow": "approve", "count": 17950},
                        {"live": "approve", "shadow": "review", "count": 49},
                        {"live": "review", "shadow": "review", "count": 241},
                    ],
                }
            ]
        }
    )

    shadow_ruleset_version: str | None = Field(max_length=64)
    scored_since: datetime
    scored_until: datetime
    evaluated: int = Field(ge=0)
    agreed: int = Field(ge=0)
    pairs: list[DecisionPair] = Field(max_length=9)
