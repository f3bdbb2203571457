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
