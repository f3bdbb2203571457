"""accounts: authorization codes (PKCE), whom a public client signs in, staff refresh tokens

A code is kept only as its SHA-256, bound to its client, redirect URI, code challenge,
subject (a customer or a staff member) and scopes, and used once: the refresh family it
issued is kept on its row so that a second use revokes it (RFC 6749 10.5). Refresh tokens
may belong to a staff member (then they name the client that got them). See
docs/decisions/0037.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "clients",
        sa.Column("signs_in", sa.String(16), nullable=False, server_default=sa.text("'customers'")),
    )
    # Only a public client has a sign-in page; the others sign no one in.
    op.create_check_constraint(
        "ck_clients_signs_in",
        "clients",
        "signs_in IN ('customers', 'staff') AND (kind = 'public' OR signs_in = 'customers')",
    )
    op.alter_column("refresh_tokens", "customer_id", nullable=True)
    op.add_column(
        "refresh_tokens", sa.Column("staff_id", sa.Uuid(), sa.ForeignKey("staff.id"), nullable=True)
    )
    op.add_column(
        "refresh_tokens",
        sa.Column("client_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=True),
    )
    op.create_check_constraint(
        "ck_refresh_tokens_one_subject",
        "refresh_tokens",
        "(customer_id IS NULL) <> (staff_id IS NULL)",
    )
    # Disabling a member revokes their families: found by member.
    op.create_index("ix_refresh_tokens_staff_id", "refresh_tokens", ["staff_id"])
    op.create_table(
        "authorization_codes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("code_hash", sa.CHAR(64), nullable=False),
        sa.Column("client_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=True),
        sa.Column("staff_id", sa.Uuid(), sa.ForeignKey("staff.id"), nullable=True),
        sa.Column("scopes", ARRAY(sa.String(40)), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        # The refresh family the redemption issued: what a second use revokes.
        sa.Column("family_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("code_hash", name="uq_authorization_codes_code_hash"),
        sa.CheckConstraint(
            "(customer_id IS NULL) <> (staff_id IS NULL)",
            name="ck_authorization_codes_one_subject",
        ),
        sa.CheckConstraint(
            "(redeemed_at IS NULL) = (family_id IS NULL)",
            name="ck_authorization_codes_redeemed_family",
        ),
    )


def downgrade() -> None:
    op.drop_table("authorization_codes")
    op.execute("DELETE FROM refresh_tokens WHERE staff_id IS NOT NULL")
    op.drop_index("ix_refresh_tokens_staff_id", table_name="refresh_tokens")
    op.drop_constraint("ck_refresh_tokens_one_subject", "refresh_tokens", type_="check")
    op.drop_column("refresh_tokens", "client_id")
    op.drop_column("refresh_tokens", "staff_id")
    op.alter_column("refresh_tokens", "customer_id", nullable=False)
    op.drop_constraint("ck_clients_signs_in", "clients", type_="check")
    op.drop_column("clients", "signs_in")
