"""what each callback client may decide: its accounts and an optional reference prefix

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Clients registered before this revision get no accounts, so they decide nothing
    # until an operator registers a bound client in their place (decision 0014). The
    # default also binds to nothing a client a pod of the previous release registers
    # during the rollout.
    op.add_column(
        "callback_clients",
        sa.Column(
            "account_ids",
            postgresql.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
    )
    op.add_column("callback_clients", sa.Column("reference_prefix", sa.String(64), nullable=True))
    op.create_check_constraint(
        "ck_callback_clients_account_ids_bounded",
        "callback_clients",
        "cardinality(account_ids) <= 100",
    )


def downgrade() -> None:
    op.drop_constraint("ck_callback_clients_account_ids_bounded", "callback_clients")
    op.drop_column("callback_clients", "reference_prefix")
    op.drop_column("callback_clients", "account_ids")
