"""outcomes, account features, deny-list, shadow scores, review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("transfer_id", sa.Uuid(), primary_key=True),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("target_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("final_status", sa.String(16), nullable=False),
        sa.Column("review_decision", sa.String(16), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_outcomes_amount_minor_positive"),
        sa.CheckConstraint(
            "final_status IN ('completed', 'rejected', 'declined', 'expired', 'cancelled')",
            name="ck_outcomes_final_status_known",
        ),
        sa.CheckConstraint(
            "review_decision IS NULL OR review_decision IN ('approve', 'reject')",
            name="ck_outcomes_review_decision_known",
        ),
    )
    # Windows: the source's outcomes in the last hour and day.
    op.create_index(
        "ix_outcomes_source_account_id_occurred_at",
        "outcomes",
        ["source_account_id", "occurred_at"],
    )
    # Known counterparty: money already reached this target from this source.
    op.create_index(
        "ix_outcomes_completed_source_account_id_target_account_id",
        "outcomes",
        ["source_account_id", "target_account_id"],
        postgresql_where=sa.text("final_status = 'completed'"),
    )

    op.create_table(
        "account_features",
        sa.Column("account_id", sa.Uuid(), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_transfers", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("amount_currency", sa.String(3), nullable=True),
        sa.Column(
            "amount_history",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'::bigint[]"),
            nullable=False,
        ),
        sa.Column("amount_median_minor", sa.BigInteger(), nullable=True),
        sa.Column("amount_spread_minor", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "completed_transfers >= 0", name="ck_account_features_completed_transfers"
        ),
        sa.CheckConstraint(
            "cardinality(amount_history) <= 50", name="ck_account_features_history_bounded"
        ),
        sa.CheckConstraint(
            "amount_median_minor IS NULL OR amount_median_minor > 0",
            name="ck_account_features_median_positive",
        ),
    )

    op.create_table(
        "denied_accounts",
        sa.Column("account_id", sa.Uuid(), primary_key=True),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("listed_by", sa.String(64), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "shadow_scores",
        sa.Column("transfer_id", sa.Uuid(), primary_key=True),
        sa.Column("ruleset_version", sa.String(64), primary_key=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reasons", postgresql.JSONB(), nullable=False),
        sa.Column("live_ruleset_version", sa.String(64), nullable=False),
        sa.Column("live_decision", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score BETWEEN 0 AND 1000", name="ck_shadow_scores_score_range"),
        sa.CheckConstraint(
            "decision IN ('approve', 'review', 'decline')", name="ck_shadow_scores_decision_known"
        ),
        sa.CheckConstraint(
            "live_decision IN ('approve', 'review', 'decline')",
            name="ck_shadow_scores_live_decision_known",
        ),
    )
    # Comparing a shadow ruleset with the live one over a period.
    op.create_index(
        "ix_shadow_scores_ruleset_version_created_at",
        "shadow_scores",
        ["ruleset_version", "created_at"],
    )

    # The review queue: scores waiting for their outcome, oldest first.
    op.create_table(
        "pending_reviews",
        sa.Column("transfer_id", sa.Uuid(), sa.ForeignKey("scores.transfer_id"), primary_key=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pending_reviews_scored_at", "pending_reviews", ["scored_at", "transfer_id"])
    # A recipient is now known from completed outcomes, not from approved scores.
    op.drop_index("ix_scores_source_account_id_target_account_id", table_name="scores")


def downgrade() -> None:
    op.create_index(
        "ix_scores_source_account_id_target_account_id",
        "scores",
        ["source_account_id", "target_account_id"],
    )
    op.drop_table("pending_reviews")
    op.drop_table("shadow_scores")
    op.drop_table("denied_accounts")
    op.drop_table("account_features")
    op.drop_table("outcomes")
