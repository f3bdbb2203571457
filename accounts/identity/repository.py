"""Every query of the token issuer: customers, clients, refresh tokens, authorization
codes, startup records.

All of them go through a SQLAlchemy session: the issuer's own transactions (its grants and
its bootstrap) or the request's unit of work (registration).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import (
    AUDIT_EVENTS,
    AuthorizationCodeRow,
    ClientRow,
    CustomerRow,
    RefreshTokenRow,
    StaffRow,
)

# Serialises the bootstrap of clients and the key-activation record across replicas that
# start at once (transaction-scoped, so it cannot outlive a crashed startup).
_STARTUP_LOCK_KEY = 0x5A6A_AC01


async def lock_startup(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STARTUP_LOCK_KEY})


async def insert_customer(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    email: str,
    display_name: str | None,
    password_hash: str,
    created_at: datetime,
) -> bool:
    """Insert unless the email is taken (also by a concurrent insert); True if inserted."""
    statement = (
        insert(CustomerRow)
        .values(
            id=customer_id,
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(CustomerRow.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def customer_by_email(session: AsyncSession, email: str) -> CustomerRow | None:
    statement = select(CustomerRow).where(CustomerRow.email == email)
    return (await session.execute(statement)).scalar_one_or_none()


async def set_password_hash(
    session: AsyncSession, customer_id: uuid.UUID, password_hash: str
) -> None:
    await session.execute(
        update(CustomerRow).where(CustomerRow.id == customer_id).values(password_hash=password_hash)
    )


async def get_client(session: AsyncSession, client_id: str) -> ClientRow | None:
    statement = select(ClientRow).where(ClientRow.client_id == client_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def list_clients(session: AsyncSession) -> list[ClientRow]:
    statement = select(ClientRow).order_by(ClientRow.client_id).limit(1000)
    return list((await session.execute(statement)).scalars())


async def insert_client(
    session: AsyncSession,
    *,
    client_id: str,
    secret_hash: str | None,
    kind: str,
    scopes: list[str],
    redirect_uris: list[str],
    signs_in: str,
    now: datetime,
) -> None:
    session.add(
        ClientRow(
            client_id=client_id,
            secret_hash=secret_hash,
            kind=kind,
            scopes=scopes,
            redirect_uris=redirect_uris,
            signs_in=signs_in,
            created_at=now,
            updated_at=now,
            disabled_at=None,
        )
    )
    await session.flush()


async def update_client(session: AsyncSession, client_id: str, **values: Any) -> None:
    await session.execute(
        update(ClientRow)
        .where(ClientRow.client_id == client_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def insert_refresh_token(
    session: AsyncSession,
    *,
    family_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    token_hash: str,
    scopes: list[str],
    created_at: datetime,
    expires_at: datetime,
    staff_id: uuid.UUID | None = None,
    client_id: str | None = None,
) -> None:
    session.add(
        RefreshTokenRow(
            id=uuid.uuid4(),
            family_id=family_id,
            customer_id=customer_id,
            staff_id=staff_id,
            client_id=client_id,
            token_hash=token_hash,
            scopes=scopes,
            created_at=created_at,
            expires_at=expires_at,
            used_at=None,
            revoked_at=None,
        )
    )
    await session.flush()


async def lock_refresh_token(session: AsyncSession, token_hash: str) -> RefreshTokenRow | None:
    """The token's row, locked: two requests with one token are judged one after the other."""
    statement = (
        select(RefreshTokenRow)
        .where(RefreshTokenRow.token_hash == token_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def mark_refresh_token_used(
    session: AsyncSession, token_id: uuid.UUID, *, now: datetime
) -> None:
    await session.execute(
        update(RefreshTokenRow).where(RefreshTokenRow.id == token_id).values(used_at=now)
    )


async def revoke_refresh_family(
    session: AsyncSession, family_id: uuid.UUID, *, now: datetime
) -> int:
    """Revoke every token of the family not revoked yet; how many."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RefreshTokenRow.id)
    )
    return len(result.all())


async def last_audit_event(session: AsyncSession, *, action: str) -> Any:
    """The newest audit event with this action (its row), or None."""
    statement = (
        select(AUDIT_EVENTS)
        .where(AUDIT_EVENTS.c.action == action)
        .order_by(AUDIT_EVENTS.c.sequence.desc())
        .limit(1)
    )
    return (await session.execute(statement)).first()


async def revoke_staff_refresh_tokens(
    session: AsyncSession, staff_id: uuid.UUID, *, now: datetime
) -> int:
    """Revoke every live refresh token of the staff member; how many."""
    result = await session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.staff_id == staff_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RefreshTokenRow.id)
    )
    return len(result.all())


async def get_staff(session: AsyncSession, staff_id: uuid.UUID) -> StaffRow | None:
    statement = select(StaffRow).where(StaffRow.id == staff_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_authorization_code(session: AsyncSession, row: AuthorizationCodeRow) -> None:
    session.add(row)
    await session.flush()


async def lock_authorization_code(
    session: AsyncSession, code_hash: str
) -> AuthorizationCodeRow | None:
    """The code's row, locked: of two redemptions of one code, the second sees the first."""
    statement = (
        select(AuthorizationCodeRow)
        .where(AuthorizationCodeRow.code_hash == code_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def mark_authorization_code_redeemed(
    session: AsyncSession, code_id: uuid.UUID, *, family_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(AuthorizationCodeRow)
        .where(AuthorizationCodeRow.id == code_id)
        .values(redeemed_at=now, family_id=family_id)
    )
