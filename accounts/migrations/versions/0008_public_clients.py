"""accounts: public clients (no secret) with their exact redirect URIs

A browser app such as the operator console cannot keep a secret (RFC 6749 2.1): it is
registered with the redirect URIs the authorization endpoint may send its codes to. See
docs/decisions/0036.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "clients",
        sa.Column(
            "redirect_uris",
            ARRAY(sa.String(2000)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
    )
    op.alter_column("clients", "secret_hash", nullable=True)
    op.drop_constraint("ck_clients_kind", "clients", type_="check")
    op.create_check_constraint(
        "ck_clients_kind", "clients", "kind IN ('service', 'operator', 'public')"
    )
    # Exactly the public clients go without a secret, and only they have redirect URIs.
    op.create_check_constraint(
        "ck_clients_public_has_no_secret",
        "clients",
        "(kind = 'public') = (secret_hash IS NULL)"
        " AND (kind = 'public') = (cardinality(redirect_uris) > 0)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM clients WHERE kind = 'public'")
    op.drop_constraint("ck_clients_public_has_no_secret", "clients", type_="check")
    op.drop_constraint("ck_clients_kind", "clients", type_="check")
    op.create_check_constraint("ck_clients_kind", "clients", "kind IN ('service', 'operator')")
    op.alter_column("clients", "secret_hash", nullable=False)
    op.drop_column("clients", "redirect_uris")
