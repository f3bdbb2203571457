"""Tables of the fraud database."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ScoreRow(Base):
    """The score of one transfer. Immutable: a re-score of the transfer returns this row.

    `created_at` is the scoring clock's time (not the database's), so the velocity window
    and the stored scores agree on what "the last hour" means.
    """

    __tablename__ = "scores"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_scores_amount_minor_positive"),
        CheckConstraint("score BETWEEN 0 AND 1000", name="ck_scores_score_range"),
        CheckConstraint(
            "decision IN ('approve', 'review', 'decline')", name="ck_scores_decision_known"
        ),
        Index("ix_scores_source_account_id_created_at", "source_account_id", "created_at"),
        Index(
            "ix_scores_source_account_id_target_account_id",
            "source_account_id",
            "target_account_id",
        ),
    )

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    source_account_id: Mapped[uuid.UUID]
    target_account_id: Mapped[uuid.UUID]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    score: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    ruleset_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
