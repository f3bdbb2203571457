"""Re-sealing a table's secrets under the newest key of a ring, in batches, and the admin
route that does one batch (`POST /v1/admin/secrets/reseal`, scope `secrets:rotate`).

A batch locks the next rows (by id, after a cursor) that are not yet under the newest key,
re-seals each and moves the cursor past them; a row no key opens is counted and skipped.
Each batch is its own transaction, so a rotation cut off midway has committed its earlier
batches, and running it again finds only the rows left.
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import ColumnElement, Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from contracts.auth import Scope
from contracts.secrets import (
    SECRETS_RESEAL_PATH,
    UNREADABLE_IDS_SHOWN_MAX,
    ResealBatch,
    ResealRequest,
)
from kit import audit
from kit.audit import change_event
from kit.auth import Principal, require_scopes
from kit.db import Session
from kit.errors import Forbidden, InvalidRequest, ProblemError, Unauthorized
from kit.params import AuditActor, Now
from kit.problems import problem_responses
from kit.sealing import KeyRing, SealedValueUnreadable, header_of

RESEALED_ACTION = "secrets.resealed"


@dataclass(frozen=True)
class SealedColumns:
    """Where a table keeps its sealed secrets: the row id (the associated data), the sealed
    value, and optionally a column of plain text from before sealing, emptied once sealed."""

    # QueryableAttribute, not InstrumentedAttribute: a descriptor type here would read as
    # the column's value on a dataclass instance.
    id: QueryableAttribute[uuid.UUID]
    sealed: QueryableAttribute[Any]
    plain_text: QueryableAttribute[Any] | None = None


def _stale(columns: SealedColumns, ring: KeyRing) -> ColumnElement[bool]:
    """Rows not sealed under the ring's newest key (or still in plain text)."""
    header = header_of(ring.newest_key_id)
    conditions = [
        columns.sealed.is_(None),
        func.substring(columns.sealed, 1, len(header)) != header,
    ]
    if columns.plain_text is not None:
        conditions.append(columns.plain_text.is_not(None))
    return or_(*conditions)


def _plain_bytes(row: Any, columns: SealedColumns, ring: KeyRing, row_id: uuid.UUID) -> bytes:
    """What a row seals: its plain text if it still has some, else its opened secret."""
    if columns.plain_text is not None and row.plain_text is not None:
        plain_text: str = row.plain_text
        return plain_text.encode()
    if row.sealed is None:
        raise SealedValueUnreadable("neither sealed nor plain text")
    return ring.open(bytes(row.sealed), associated_data=row_id.bytes)


async def reseal_batch(
    session: AsyncSession,
    columns: SealedColumns,
    ring: KeyRing,
    *,
    service: str,
    after: uuid.UUID | None,
    limit: int,
    plain_text_only: bool = False,
) -> ResealBatch:
    """Re-seal up to `limit` rows after `after` that are not under the newest key (only
    those in plain text with `plain_text_only`), locked until the caller commits."""
    assert limit > 0
    if plain_text_only:
        assert columns.plain_text is not None, "a table without plain text has none to seal"
        stale: ColumnElement[bool] = columns.plain_text.is_not(None)
    else:
        stale = _stale(columns, ring)
    fields = [columns.id.label("id"), columns.sealed.label("sealed")]
    if columns.plain_text is not None:
        fields.append(columns.plain_text.label("plain_text"))
    statement = select(*fields).where(stale).order_by(columns.id).limit(limit).with_for_update()
    if after is not None:
        statement = statement.where(columns.id > after)
    rows = (await session.execute(statement)).all()
    unreadable: list[uuid.UUID] = []
    for row in rows:
        try:
            plain = _plain_bytes(row, columns, ring, row.id)
        except SealedValueUnreadable:
            unreadable.append(row.id)
            continue
        sealed = ring.seal(plain, associated_data=row.id.bytes)
        values: dict[str, Any] = {columns.sealed.key: sealed}
        if columns.plain_text is not None:
            values[columns.plain_text.key] = None
        await session.execute(
            update(columns.id.class_)
            .where(columns.id == row.id)
            .values(values)
            .execution_options(synchronize_session=False)
        )
    return ResealBatch(
        service=service,
        key_id=ring.newest_key_id,
        examined=len(rows),
        resealed=len(rows) - len(unreadable),
        unreadable_count=len(unreadable),
        unreadable_ids=unreadable[:UNREADABLE_IDS_SHOWN_MAX],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


Reseal = Callable[[AsyncSession, ResealRequest], Awaitable[ResealBatch]]


def secrets_router(
    *, reseal: Reseal, audit_table: Table, problems: Sequence[type[ProblemError]] = ()
) -> APIRouter:
    """`POST /v1/admin/secrets/reseal` for callers with `secrets:rotate`: one batch, audited
    as `secrets.resealed` in the same transaction (counts and the key id; never a secret).
    `problems`: those `reseal` itself may raise, for the route's documentation."""
    router = APIRouter(tags=["secrets"])
    Rotator = Annotated[Principal, Depends(require_scopes(Scope.secrets_rotate))]

    @router.post(
        SECRETS_RESEAL_PATH,
        summary="Re-seal one batch of this service's secrets under its newest key",
        responses=problem_responses(Unauthorized, Forbidden, InvalidRequest, *problems),
    )
    async def reseal_secrets(
        _principal: Rotator, actor: AuditActor, now: Now, session: Session, body: ResealRequest
    ) -> ResealBatch:
        batch = await reseal(session, body)
        if batch.resealed or batch.unreadable_count:
            event = change_event(
                actor,
                action=RESEALED_ACTION,
                subject_type="secrets",
                subject_id=batch.key_id,
                now=now,
                after=batch.model_dump(mode="json", exclude={"unreadable_ids", "next_after"}),
            )
            await audit.append(session, audit_table, event)
        return batch

    return router
