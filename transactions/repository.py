"""Every query of the transactions service."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Interval,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.secrets import ResealBatch
from contracts.transfers import StepRecord, TransferCreate, TransferStatus, initial_status
from kit import audit
from kit.resealing import SealedColumns, reseal_batch
from kit.sealing import KeyRing
from transactions.changes import (
    IDEMPOTENCY_KEY_SETTLED_CHANNEL,
    TRANSFER_FINISHED_CHANNEL,
    idempotency_key_payload,
)
from transactions.models import (
    Base,
    CallbackClientRow,
    CallbackReceiptRow,
    IdempotencyKeyRow,
    TransferRow,
    TransferStepRow,
    audit_events,
)

IN_FLIGHT = "in_flight"
COMPLETED = "completed"

# The hot paths (a create, a step report) run statements built once, here, on the tables:
# building one per call (and the ORM's handling of its own DML) cost more CPU than running
# it. SQLAlchemy memoizes a statement object's cache key, so each call only binds values.
# An UPDATE's or INSERT's bindparam may not share a column's name: hence `new_`, `our_`.
_transfers = Base.metadata.tables["transfers"]
_steps = Base.metadata.tables["transfer_steps"]
_keys = Base.metadata.tables["idempotency_keys"]


# --- idempotency keys -------------------------------------------------------------------


async def claim_idempotency_key(
    session: AsyncSession,
    *,
    caller: str,
    key: str,
    request_hash: str,
    transfer_id: uuid.UUID,
    ttl: timedelta,
    lease: timedelta,
) -> uuid.UUID | None:
    """Claim `key` for this request; the transfer id to use, or None if someone holds it.

    A new key is claimed with `transfer_id`. An expired key is claimed afresh. An
    in-flight claim of the same request whose lease ran out (its holder failed or died)
    is resumed with the transfer id it was claimed with, so a retry never creates a
    second transfer.
    """
    parameters = {
        "new_caller": caller,
        "new_key": key,
        "new_request_hash": request_hash,
        "new_transfer_id": transfer_id,
        "ttl": ttl,
        "lease": lease,
    }
    claimed: uuid.UUID | None = (await session.execute(_CLAIM_KEY, parameters)).scalar_one_or_none()
    return claimed


def _claim_statement() -> Any:
    table = _keys.c
    inserting = insert(_keys).values(
        caller=bindparam("new_caller"),
        key=bindparam("new_key"),
        request_hash=bindparam("new_request_hash"),
        state=IN_FLIGHT,
        transfer_id=bindparam("new_transfer_id"),
        created_at=func.now(),
        expires_at=func.now() + bindparam("ttl", type_=Interval),
        locked_until=func.now() + bindparam("lease", type_=Interval),
    )
    excluded = inserting.excluded
    same_unfinished_request = and_(
        table.state == IN_FLIGHT, table.request_hash == excluded.request_hash
    )
    return inserting.on_conflict_do_update(
        index_elements=[table.caller, table.key],
        set_={
            "request_hash": excluded.request_hash,
            "state": IN_FLIGHT,
            "transfer_id": case(
                (same_unfinished_request, table.transfer_id), else_=excluded.transfer_id
            ),
            "response_status": null(),
            "response_body": null(),
            "created_at": excluded.created_at,
            "expires_at": excluded.expires_at,
            "locked_until": excluded.locked_until,
        },
        where=or_(
            table.expires_at <= func.now(),
            and_(same_unfinished_request, table.locked_until <= func.now()),
        ),
    ).returning(table.transfer_id)


_CLAIM_KEY: Final = _claim_statement()


def _our_claim_in_flight(*, caller: str, key: str, transfer_id: uuid.UUID) -> ColumnElement[bool]:
    """The condition that the key is still claimed, in flight, for our transfer: what every
    change of a claim by its holder requires, so a claim lost to a resumer stays theirs."""
    return and_(
        IdempotencyKeyRow.caller == caller,
        IdempotencyKeyRow.key == key,
        IdempotencyKeyRow.transfer_id == transfer_id,
        IdempotencyKeyRow.state == IN_FLIGHT,
    )


async def get_idempotency_key(
    session: AsyncSession, *, caller: str, key: str
) -> IdempotencyKeyRow | None:
    return (
        await session.execute(
            select(IdempotencyKeyRow).where(
                IdempotencyKeyRow.caller == caller, IdempotencyKeyRow.key == key
            )
        )
    ).scalar_one_or_none()


async def complete_idempotency_key(
    session: AsyncSession,
    *,
    caller: str,
    key: str,
    transfer_id: uuid.UUID,
    response_status: int,
    response_body: dict[str, Any],
) -> bool:
    """Store the response of our claim; False if the claim is no longer ours in flight.
    Duplicates waiting on the key are notified (once this commits) in the same statement."""
    parameters = {
        "our_caller": caller,
        "our_key": key,
        "our_transfer_id": transfer_id,
        "new_response_status": response_status,
        "new_response_body": response_body,
        "payload": idempotency_key_payload(caller, key),
    }
    completed = (await session.execute(_COMPLETE_KEY, parameters)).first() is not None
    return completed


def _complete_statement() -> Any:
    table = _keys.c
    # pg_notify in RETURNING runs once per row updated: only when the claim was ours.
    return (
        update(_keys)
        .where(
            table.caller == bindparam("our_caller"),
            table.key == bindparam("our_key"),
            table.transfer_id == bindparam("our_transfer_id"),
            table.state == IN_FLIGHT,
        )
        .values(
            state=COMPLETED,
            response_status=bindparam("new_response_status"),
            response_body=bindparam("new_response_body"),
            locked_until=null(),
        )
        .returning(
            table.key,
            func.pg_notify(
                literal(IDEMPOTENCY_KEY_SETTLED_CHANNEL, String), bindparam("payload", type_=String)
            ),
        )
    )


_COMPLETE_KEY: Final = _complete_statement()


async def release_idempotency_key(
    session: AsyncSession, *, caller: str, key: str, transfer_id: uuid.UUID
) -> None:
    """End the lease of our in-flight claim now, so that a retry may resume it."""
    await session.execute(
        update(IdempotencyKeyRow)
        .where(_our_claim_in_flight(caller=caller, key=key, transfer_id=transfer_id))
        .values(locked_until=func.now())
    )
    # Duplicates waiting on the key may now resume the claim.
    await _notify(session, IDEMPOTENCY_KEY_SETTLED_CHANNEL, idempotency_key_payload(caller, key))


async def forget_idempotency_key(
    session: AsyncSession, *, caller: str, key: str, transfer_id: uuid.UUID
) -> bool:
    """Delete our in-flight claim if nothing was created under it yet (no transfer row), as
    if the request had never come; True if deleted. A claim whose transfer exists is kept,
    so that a retry resumes that transfer."""
    table = IdempotencyKeyRow
    deleted = (
        await session.execute(
            delete(table)
            .where(
                _our_claim_in_flight(caller=caller, key=key, transfer_id=transfer_id),
                ~exists().where(TransferRow.id == transfer_id),
            )
            .returning(table.key)
        )
    ).scalar_one_or_none() is not None
    if deleted:
        # Duplicates waiting on the key may now claim it afresh.
        await _notify(
            session, IDEMPOTENCY_KEY_SETTLED_CHANNEL, idempotency_key_payload(caller, key)
        )
    return deleted


async def purge_expired_idempotency_keys(session: AsyncSession, *, limit: int) -> int:
    """Delete at most `limit` expired keys, oldest first; the number deleted.

    SKIP LOCKED: two instances purging at once take different rows, and a key being
    claimed afresh right now is left to its claimer.
    """
    assert limit > 0
    table = IdempotencyKeyRow
    expired = (
        select(table.caller, table.key)
        .where(table.expires_at <= func.now())
        .order_by(table.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        delete(table).where(tuple_(table.caller, table.key).in_(expired)).returning(table.key)
    )
    return len((await session.execute(statement)).scalars().all())


async def _notify(session: AsyncSession, channel: str, payload: str) -> None:
    """NOTIFY inside the caller's transaction: listeners hear it only once it commits."""
    await session.execute(select(func.pg_notify(channel, payload)))


# --- transfers --------------------------------------------------------------------------


async def insert_transfer(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    transfer: TransferCreate,
    customer_id: str | None,
) -> tuple[bool, datetime]:
    """Insert a pending (or scheduled) transfer unless its id exists; whether this call
    created it, and when it was recorded (the saga's start deadline counts from then, or
    from its `execute_at`)."""
    row = {
        "id": transfer_id,
        "source_account_id": transfer.source_account_id,
        "target_account_id": transfer.target_account_id,
        "amount_minor": transfer.amount_minor,
        "currency": transfer.currency,
        "description": transfer.description,
        "metadata": transfer.metadata,
        "customer_id": customer_id,
        "status": initial_status(transfer).value,
        "execute_at": transfer.execute_at,
        "version": 0,
    }
    created_at = (await session.execute(_INSERT_TRANSFER, row)).scalar_one_or_none()
    if created_at is not None:
        return True, created_at
    existing = await session.execute(_CREATED_AT, {"transfer_id": transfer_id})
    return False, existing.scalar_one()


# VALUES from the keys of the row passed with it.
_INSERT_TRANSFER: Final = (
    insert(_transfers)
    .on_conflict_do_nothing(index_elements=[_transfers.c.id])
    .returning(_transfers.c.created_at)
)
_CREATED_AT: Final = select(_transfers.c.created_at).where(
    _transfers.c.id == bindparam("transfer_id")
)


async def mark_saga_started(session: AsyncSession, *, transfer_id: uuid.UUID) -> bool:
    """Record that the transfer's saga is known to run; True the first time."""
    marked = await session.execute(_MARK_SAGA_STARTED, {"transfer_id": transfer_id})
    return marked.first() is not None


_MARK_SAGA_STARTED: Final = (
    update(_transfers)
    .where(_transfers.c.id == bindparam("transfer_id"), _transfers.c.saga_started_at.is_(None))
    .values(saga_started_at=func.now())
    .returning(_transfers.c.id)
)


async def unstarted_transfers(
    session: AsyncSession, *, created_before: datetime, limit: int
) -> Sequence[TransferRow]:
    """Transfers whose saga is not known to run, recorded before `created_before`, oldest
    first. Not locked: starting a saga is idempotent, and so is marking it started."""
    statement = (
        select(TransferRow)
        .where(TransferRow.saga_started_at.is_(None), TransferRow.created_at < created_before)
        .order_by(TransferRow.created_at)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


async def get_transfer(session: AsyncSession, transfer_id: uuid.UUID) -> TransferRow | None:
    return (await session.execute(_GET_TRANSFER, {"transfer_id": transfer_id})).scalar_one_or_none()


_GET_TRANSFER: Final = select(TransferRow).where(TransferRow.id == bindparam("transfer_id"))


async def list_transfers(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: TransferStatus | None,
    account_id: uuid.UUID | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[TransferRow]:
    """Newest first by (created_at, id); `after` is the last row of the previous page.
    With `customer_id`, only the transfers that customer created."""
    assert limit > 0
    statement = select(TransferRow)
    if customer_id is not None:
        statement = statement.where(TransferRow.customer_id == customer_id)
    if status is not None:
        statement = statement.where(TransferRow.status == status.value)
    if account_id is not None:
        statement = statement.where(
            or_(
                TransferRow.source_account_id == account_id,
                TransferRow.target_account_id == account_id,
            )
        )
    if created_after is not None:
        statement = statement.where(TransferRow.created_at >= created_after)
    if created_before is not None:
        statement = statement.where(TransferRow.created_at < created_before)
    if after is not None:
        after_created_at, after_id = after
        statement = statement.where(
            or_(
                TransferRow.created_at < after_created_at,
                and_(TransferRow.created_at == after_created_at, TransferRow.id < after_id),
            )
        )
    statement = statement.order_by(TransferRow.created_at.desc(), TransferRow.id.desc()).limit(
        limit
    )
    return (await session.execute(statement)).scalars().all()


@dataclass(frozen=True)
class ProjectionMove:
    """A report that moved the projection: the status it left, and how long after the
    transfer's creation it moved (the database's clock both times)."""

    status_before: TransferStatus
    since_created_seconds: float


async def update_projection(
    session: AsyncSession, *, transfer_id: uuid.UUID, record: StepRecord
) -> ProjectionMove | None:
    """Move the projection to `record` if it is newer than the last applied report; the
    move, or None when the report was older.

    The version guard sits in the UPDATE itself, so two reports racing for the same
    row serialise on its lock and the newer one wins whatever order they commit in.
    """
    # A step reports only what it learnt; fields it leaves out (None) keep their value.
    parameters = {
        "transfer_id": transfer_id,
        "new_status": record.status.value,
        "new_version": record.version,
        "new_fraud": None if record.fraud is None else record.fraud.model_dump(mode="json"),
        "new_hold_id": record.hold_id,
        "new_posting_id": record.posting_id,
        "new_failure_reason": record.failure_reason,
    }
    # A terminal report wakes requests waiting on this transfer (Prefer: wait) once it
    # commits: its NOTIFY rides in the same statement, run only if the projection moved.
    statement = _MOVE_TO_TERMINAL if record.status.is_terminal else _MOVE_PROJECTION
    moved = (await session.execute(statement, parameters)).one_or_none()
    if moved is None:
        return None
    return ProjectionMove(TransferStatus(moved[0]), float(moved[1]))


def _kept_unless_given(name: str) -> ColumnElement[Any]:
    column = _transfers.c[name]
    return func.coalesce(bindparam(f"new_{name}", type_=column.type), column)


def _projection_statement(*, notify_finished: bool) -> Any:
    table = _transfers.c
    # RETURNING shows the new row; the status it had comes from this locked read, which a
    # racing report waits on and then reads as the winner left it (READ COMMITTED rereads
    # a locked row), so exactly one report sees the move into a terminal status. NO KEY
    # UPDATE, the UPDATE's own lock: FOR UPDATE would deadlock with the KEY SHARE lock a
    # racing report's step INSERT takes on this row (its foreign key).
    before = (
        select(table.id, table.status)
        .where(table.id == bindparam("transfer_id"))
        .with_for_update(key_share=True)
        .subquery()
    )
    returning: list[ColumnElement[Any]] = [
        before.c.status,
        func.extract("epoch", table.updated_at - table.created_at),
    ]
    if notify_finished:
        returning.append(
            func.pg_notify(literal(TRANSFER_FINISHED_CHANNEL, String), cast(table.id, String))
        )
    return (
        update(_transfers)
        .where(table.id == before.c.id, table.version < bindparam("new_version"))
        .values(
            status=bindparam("new_status"),
            version=bindparam("new_version"),
            updated_at=func.now(),
            fraud=_kept_unless_given("fraud"),
            hold_id=_kept_unless_given("hold_id"),
            posting_id=_kept_unless_given("posting_id"),
            failure_reason=_kept_unless_given("failure_reason"),
        )
        .returning(*returning)
    )


_MOVE_PROJECTION: Final = _projection_statement(notify_finished=False)
_MOVE_TO_TERMINAL: Final = _projection_statement(notify_finished=True)


# --- steps ------------------------------------------------------------------------------


async def insert_steps(
    session: AsyncSession, *, transfer_id: uuid.UUID, records: Sequence[StepRecord]
) -> list[bool]:
    """Record, in one statement, each step this transfer does not have yet; per record,
    whether this call recorded it (a step named twice in `records`: its first only)."""
    rows = [
        {
            "transfer_id": transfer_id,
            "step": record.step,
            "outcome": record.outcome,
            "status": record.status.value,
            "version": record.version,
            "occurred_at": record.occurred_at,
            "detail": record.detail,
        }
        for record in records
    ]
    # Several rows: SQLAlchemy sends one multi-row INSERT ("insertmanyvalues"); RETURNING
    # names the steps inserted, in no promised order.
    inserted = set((await session.execute(_INSERT_STEP, rows)).scalars().all())
    recorded: list[bool] = []
    for record in records:
        recorded.append(record.step in inserted)
        inserted.discard(record.step)
    return recorded


# VALUES from the keys of the row passed with it.
_INSERT_STEP: Final = (
    insert(_steps)
    .on_conflict_do_nothing(index_elements=[_steps.c.transfer_id, _steps.c.step])
    .returning(_steps.c.step)
)


async def list_steps(
    session: AsyncSession, transfer_ids: Sequence[uuid.UUID]
) -> Sequence[TransferStepRow]:
    """The steps of these transfers, each transfer's in the order the saga reported them."""
    if not transfer_ids:
        return []
    return (
        (await session.execute(_LIST_STEPS, {"transfer_ids": list(transfer_ids)})).scalars().all()
    )


_LIST_STEPS: Final = (
    select(TransferStepRow)
    .where(TransferStepRow.transfer_id.in_(bindparam("transfer_ids", expanding=True)))
    .order_by(TransferStepRow.transfer_id, TransferStepRow.version, TransferStepRow.step)
)


async def step_exists(session: AsyncSession, *, transfer_id: uuid.UUID, step: str) -> bool:
    statement = select(TransferStepRow.step).where(
        TransferStepRow.transfer_id == transfer_id, TransferStepRow.step == step
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


# --- callback clients and receipts ------------------------------------------------------


async def insert_callback_client(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    name: str,
    description: str | None,
    account_ids: list[uuid.UUID],
    reference_prefix: str | None,
    secret_ciphertext: bytes,
) -> CallbackClientRow | None:
    """Register a client; None if the name is taken."""
    statement = (
        insert(CallbackClientRow)
        .values(
            id=client_id,
            name=name,
            description=description,
            account_ids=account_ids,
            reference_prefix=reference_prefix,
            secret_ciphertext=secret_ciphertext,
        )
        .on_conflict_do_nothing(index_elements=[CallbackClientRow.name])
        .returning(CallbackClientRow)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_callback_client(
    session: AsyncSession, client_id: uuid.UUID
) -> CallbackClientRow | None:
    return await session.get(CallbackClientRow, client_id)


async def get_callback_receipt(
    session: AsyncSession, *, client_id: uuid.UUID, webhook_id: str
) -> CallbackReceiptRow | None:
    statement = select(CallbackReceiptRow).where(
        CallbackReceiptRow.client_id == client_id, CallbackReceiptRow.webhook_id == webhook_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_callback_receipt(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    webhook_id: str,
    transfer_id: uuid.UUID,
    decision: str,
    external_reference: str,
    response_body: dict[str, Any],
) -> bool:
    """Record that a callback takes effect; False if this webhook-id already did.

    A concurrent delivery of the same id waits here on the primary key until the first
    commits (then False) or rolls back (then True): only one ever takes effect.
    """
    statement = (
        insert(CallbackReceiptRow)
        .values(
            client_id=client_id,
            webhook_id=webhook_id,
            transfer_id=transfer_id,
            decision=decision,
            external_reference=external_reference,
            response_body=response_body,
        )
        .on_conflict_do_nothing(
            index_elements=[CallbackReceiptRow.client_id, CallbackReceiptRow.webhook_id]
        )
        .returning(CallbackReceiptRow.webhook_id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


# --- audit trail ------------------------------------------------------------------------


async def append_audit_events(session: AsyncSession, events: Sequence[AuditEventCreate]) -> None:
    """Append `events` in order in the caller's transaction (see `append_audit`)."""
    await audit.append_many(session, audit_events, events)


async def append_audit(session: AsyncSession, event: AuditEventCreate) -> bool:
    """Append `event` to the audit trail in the caller's transaction; False if an event
    with its id is already there (a retried report writes nothing new)."""
    _values, written = await audit.append(session, audit_events, event)
    return written


async def reseal_callback_secrets(
    session: AsyncSession, ring: KeyRing, *, after: uuid.UUID | None, limit: int
) -> ResealBatch:
    """Re-seal up to `limit` callback clients' secrets after `after` under the newest key."""
    columns = SealedColumns(id=CallbackClientRow.id, sealed=CallbackClientRow.secret_ciphertext)
    return await reseal_batch(
        session, columns, ring, service="transactions", after=after, limit=limit
    )
