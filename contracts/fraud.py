"""Fraud service wire contracts: scoring requests and explainable scores."""

import enum
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.common import StrictModel
from contracts.money import AmountMinor, CurrencyCode

SCORES_PATH = "/v1/scores"

SCORE_MAX = 1000


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
