"""scores

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scores",
        sa.Column("transfer_id", sa.Uuid(), primary_key=True),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("target_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reasons", postgresql.JSONB(), nullable=False),
        sa.Column("ruleset_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_scores_amount_minor_positive"),
        sa.CheckConstraint("score BETWEEN 0 AND 1000", name="ck_scores_score_range"),
        sa.CheckConstraint(
            "decision IN ('approve', 'review', 'decline')", name="ck_scores_decision_known"
        ),
    )
    # Velocity: the source's transfers in the last window.
    op.create_index(
        "ix_scores_source_account_id_created_at", "scores", ["source_account_id", "created_at"]
    )
    # Known counterparty: has the source sent to this target before.
    op.create_index(
        "ix_scores_source_account_id_target_account_id",
        "scores",
        ["source_account_id", "target_account_id"],
    )


def downgrade() -> None:
    op.drop_table("scores")
