"""audit events: the append-only, hash-chained audit trail

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

from kit.audit import create_audit_objects, drop_audit_objects

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_objects(op)


def downgrade() -> None:
    drop_audit_objects(op)
