"""event trace context: the W3C trace of the request that published an event

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10

The dispatcher starts each delivery attempt's span as a child of it, so a webhook joins
the transfer's trace (docs/decisions/0023). Events published before have none: their
deliveries start traces of their own. No grant to add: the application role's rights on
`events` are table-wide (kit.migrations, docs/decisions/0021).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("traceparent", sa.String(55), nullable=True))
    op.add_column("events", sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "tracestate")
    op.drop_column("events", "traceparent")
