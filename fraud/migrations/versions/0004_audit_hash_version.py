"""audit events: a hash version per event; the chain is keyed from here on

Events already stored keep their plain SHA-256 (version 1); the service writes every
new event with HMAC-SHA256 under its chain key (version 2). See docs/decisions/0016.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

from kit.audit import add_hash_version, drop_hash_version

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_hash_version(op)


def downgrade() -> None:
    drop_hash_version(op)
