"""accounts: the owner of an account never changes; the database refuses to change it

Other services remember an account's confirmed owner (the transfers front door), which is
only sound while no one can give the account to someone else. See docs/decisions/0030.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION accounts_refuse_new_owner() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the owner of an account never changes: account % refused', OLD.id
                USING HINT = 'Open an account for the new owner and move the money.';
        END;
        $$
        """
    )
    # `UPDATE OF customer_id` fires only when the statement names the column; the WHEN
    # clause lets a statement that names it without changing it through.
    op.execute(
        "CREATE TRIGGER accounts_owner_immutable BEFORE UPDATE OF customer_id ON accounts "
        "FOR EACH ROW WHEN (OLD.customer_id IS DISTINCT FROM NEW.customer_id) "
        "EXECUTE FUNCTION accounts_refuse_new_owner()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER accounts_owner_immutable ON accounts")
    op.execute("DROP FUNCTION accounts_refuse_new_owner()")
