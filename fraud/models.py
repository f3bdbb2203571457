"""Tables of the fraud database."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fraud.ruleset import AMOUNT_HISTORY_MAX
from kit.audit import audit_table
from kit.transfer_columns import TransferTermsColumns


class Base(DeclarativeBase):
    pass


class ScoreRow(TransferTermsColumns, Base):
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
        # The source's transfers in the last hour and day (velocity, in-flight ones).
        Index("ix_scores_source_account_id_created_at", "source_account_id", "created_at"),
    )

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    ruleset_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutcomeRow(TransferTermsColumns, Base):
    """How a transfer ended, as the saga reported it. Immutable, one per transfer.

    The per-account windows (transfers and sums in the last hour and day, declines) are
    read from these rows by time, so they roll exactly as the clock moves; joined to
    `scores` they give each rule's precision.
    """

    __tablename__ = "outcomes"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_outcomes_amount_minor_positive"),
        CheckConstraint(
            "final_status IN ('completed', 'rejected', 'declined', 'expired', 'cancelled')",
            name="ck_outcomes_final_status_known",
        ),
        CheckConstraint(
            "review_decision IS NULL OR review_decision IN ('approve', 'reject')",
            name="ck_outcomes_review_decision_known",
        ),
        Index("ix_outcomes_source_account_id_occurred_at", "source_account_id", "occurred_at"),
        # Known counterparty: has money already reached this target from this source.
        Index(
            "ix_outcomes_completed_source_account_id_target_account_id",
            "source_account_id",
            "target_account_id",
            postgresql_where=text("final_status = 'completed'"),
        ),
    )

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    final_status: Mapped[str] = mapped_column(String(16))
    review_decision: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccountFeaturesRow(Base):
    """What outlives the windows, per account: when it was first seen, its typical amount.

    Written only when an outcome is recorded (once per transfer), read by primary key at
    scoring time. The amount history holds the newest completed amounts the account sent,
    at most `AMOUNT_HISTORY_MAX`, all in `amount_currency`.
    """

    __tablename__ = "account_features"
    __table_args__ = (
        CheckConstraint("completed_transfers >= 0", name="ck_account_features_completed_transfers"),
        CheckConstraint(
            f"cardinality(amount_history) <= {AMOUNT_HISTORY_MAX}",
            name="ck_account_features_history_bounded",
        ),
        CheckConstraint(
            "amount_median_minor IS NULL OR amount_median_minor > 0",
            name="ck_account_features_median_positive",
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_transfers: Mapped[int] = mapped_column(BigInteger, server_default="0")
    amount_currency: Mapped[str | None] = mapped_column(String(3))
    amount_history: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), server_default=text("'{}'::bigint[]")
    )
    amount_median_minor: Mapped[int | None] = mapped_column(BigInteger)
    amount_spread_minor: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeniedAccountRow(Base):
    """An account operators put on the deny-list: transfers from or to it are declined."""

    __tablename__ = "denied_accounts"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(300))
    listed_by: Mapped[str] = mapped_column(String(64))
    listed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ShadowScoreRow(Base):
    """A shadow ruleset's verdict on a transfer, beside the live decision it did not make."""

    __tablename__ = "shadow_scores"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 1000", name="ck_shadow_scores_score_range"),
        CheckConstraint(
            "decision IN ('approve', 'review', 'decline')", name="ck_shadow_scores_decision_known"
        ),
        CheckConstraint(
            "live_decision IN ('approve', 'review', 'decline')",
            name="ck_shadow_scores_live_decision_known",
        ),
        Index("ix_shadow_scores_ruleset_version_created_at", "ruleset_version", "created_at"),
    )

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    ruleset_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    live_ruleset_version: Mapped[str] = mapped_column(String(64))
    live_decision: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingReviewRow(Base):
    """A transfer scored `review` whose outcome has not arrived: the review queue.

    Inserted with the score, deleted when the outcome is recorded, so the queue stays as
    small as the work waiting in it however many reviews history holds.
    """

    __tablename__ = "pending_reviews"
    __table_args__ = (Index("ix_pending_reviews_scored_at", "scored_at", "transfer_id"),)

    transfer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scores.transfer_id"), primary_key=True
    )
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# The service's audit trail (kit.audit): deny-list changes and first scores, each written
# in the transaction of the change it records.
audit_events = audit_table(Base.metadata)
