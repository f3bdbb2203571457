"""sealed webhook secrets: a sealed column beside the plain text one, exactly one set

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

The migration holds no key, so it seals nothing: each service instance seals the rows
still in plain text when it starts (and `sagabank secrets rotate` does too); see decision
0015. Until then a row keeps its plain text in `secret`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_secrets", sa.Column("secret_sealed", sa.LargeBinary(), nullable=True))
    op.alter_column("webhook_secrets", "secret", existing_type=sa.String(100), nullable=True)
    op.create_check_constraint(
        "ck_webhook_secrets_sealed_or_plain",
        "webhook_secrets",
        "(secret IS NULL) <> (secret_sealed IS NULL)",
    )


def downgrade() -> None:
    # Sealed rows cannot be opened here (no key): a downgrade needs them all in plain text,
    # which nothing writes any more, so it refuses rather than lose secrets.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM webhook_secrets WHERE secret IS NULL) THEN "
        "RAISE EXCEPTION 'sealed webhook secrets cannot be downgraded'; END IF; END $$"
    )
    op.drop_constraint("ck_webhook_secrets_sealed_or_plain", "webhook_secrets", type_="check")
    op.alter_column("webhook_secrets", "secret", existing_type=sa.String(100), nullable=False)
    op.drop_column("webhook_secrets", "secret_sealed")
