"""A tamper-evident, append-only audit trail: one table per service, one shape everywhere.

Each event is written in the same transaction as the change it records (pass the
request's session), so there is no change without its event and no event without its
change. Events are chained per service in insertion order:
`hash = HMAC-SHA256(chain key, previous hash + canonical JSON of the event)`, under a key
the database does not hold (events written before chains were keyed carry a plain
SHA-256, `hash_version` 1). A trigger refuses UPDATE, DELETE and TRUNCATE; checkpoints of
the chain's head are published outside the database (kit.audit_checkpoints); `verify`
recomputes the chain, names the first broken link, and the events missing after the last
checkpoint, so a row rewritten or a tail cut off behind the trigger's back is found.
"""

import asyncio
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import structlog
from annotated_types import Le
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Insert,
    MetaData,
    Row,
    Select,
    SmallInteger,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import (
    AUDIT_EVENTS_PATH,
    AUDIT_EXPORT_PATH,
    AUDIT_LIMIT_MAX,
    AUDIT_VERIFY_PATH,
    GENESIS_HASH,
    HASH_VERSION_KEYED,
    HASH_VERSION_UNKEYED,
    ActorType,
    AuditCheckpoint,
    AuditEvent,
    AuditEventCreate,
    AuditVerification,
)
from contracts.auth import Scope
from contracts.common import Page
from kit.audit_checkpoints import CheckpointDirectory, checkpoint_is_signed, sign_checkpoint
from kit.auth import Principal, require_scopes
from kit.db import AUDIT_CHAIN_KEY_INFO, AUDIT_SERVICE_INFO, Database, ServiceDatabase, Session
from kit.errors import Forbidden, Unauthorized
from kit.jobs import ExclusiveJob
from kit.metrics import AUDIT_APPEND_DURATION
from kit.pagination import (
    Cursor,
    InvalidCursor,
    Limit,
    cut_page,
    decode_sequence,
    encode_sequence,
    fetch_limit,
)
from kit.problems import problem_responses
from kit.problems import request_id_of as request_id_of  # its home is kit.problems

log = structlog.get_logger()

AUDIT_TABLE: Final = "audit_events"
# One chain per database: appends take this transaction-scoped advisory lock, so two
# concurrent writers cannot both link to the same previous event.
_CHAIN_LOCK_KEY: Final = 0x5A6A_A0D1
_VERIFY_BATCH_SIZE: Final = 1000
_EXPORT_BATCH_SIZE: Final = 500


# The audit table's actor_id holds 64 characters; token subjects are not bounded by it.
_ACTOR_ID_LENGTH_MAX: Final = 64


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and in which request: what its audit event says of its cause."""

    actor_id: str
    actor_type: ActorType
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, request_id: str | None) -> "Actor":
        """A caller as an actor: its token subject and kind. A subject too long for the
        column is named by its hash, which still tells one caller from another."""
        actor_id = principal.subject
        if len(actor_id) > _ACTOR_ID_LENGTH_MAX:
            actor_id = "sha256:" + hashlib.sha256(actor_id.encode()).hexdigest()[:56]
        return cls(actor_id, ActorType(principal.kind.value), request_id)


SUCCEEDED: Final = "succeeded"


def change_event(
    actor: Actor,
    *,
    action: str,
    subject_type: str,
    subject_id: uuid.UUID | str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    transfer_id: uuid.UUID | None = None,
    account_ids: Sequence[str] = (),
) -> AuditEventCreate:
    """The event of `actor`'s change of a subject, which succeeded at `now`; a fresh id
    (writers whose retries must collapse build their own deterministic one)."""
    return AuditEventCreate(
        id=uuid.uuid4(),
        occurred_at=now,
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        transfer_id=transfer_id,
        account_ids=list(account_ids),
        request_id=actor.request_id,
        before=before,
        after=after,
        outcome=SUCCEEDED,
    )


def audit_table(metadata: MetaData) -> Table:
    """The audit table, declared on a service's metadata (its models module calls this)."""
    return _audit_table(metadata, hash_version=True)


def _audit_table(metadata: MetaData, *, hash_version: bool) -> Table:
    """The table as it is now, or (`hash_version=False`) as the first migrations made it."""
    versioned = [Column("hash_version", SmallInteger, nullable=False)] if hash_version else []
    return Table(
        AUDIT_TABLE,
        metadata,
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("id", Uuid, nullable=False, unique=True),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("actor_id", String(64), nullable=False),
        Column("actor_type", String(16), nullable=False),
        Column("action", String(64), nullable=False),
        Column("subject_type", String(32), nullable=False),
        Column("subject_id", String(64), nullable=False),
        Column("transfer_id", Uuid, nullable=True),
        Column("account_ids", ARRAY(String(64)), nullable=False),
        Column("workflow_id", String(128), nullable=True),
        Column("run_id", String(64), nullable=True),
        Column("request_id", String(128), nullable=True),
        Column("before", JSONB, nullable=True),
        Column("after", JSONB, nullable=True),
        Column("outcome", String(40), nullable=False),
        Column("compensates", Uuid, nullable=True),
        Column("previous_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        *versioned,
        Index("ix_audit_events_transfer_id", "transfer_id"),
        Index("ix_audit_events_account_ids", "account_ids", postgresql_using="gin"),
        Index("ix_audit_events_actor_id", "actor_id"),
        Index("ix_audit_events_action", "action"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )


APPEND_ONLY_DDL: Final = (
    """
    CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """,
    """
    CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
    """,
)


def create_audit_objects(operation: Any) -> None:
    """For a service's Alembic migration: `create_audit_objects(op)`.

    Builds the table as the services' first audit migrations made it; each later change
    has its own migration with explicit DDL (`add_hash_version`).
    """
    bind = operation.get_bind()
    _audit_table(MetaData(), hash_version=False).create(bind)
    for statement in APPEND_ONLY_DDL:
        operation.execute(statement)


def add_hash_version(operation: Any) -> None:
    """For a service's Alembic migration: events already stored keep their plain SHA-256
    (version 1); every event written from now on says how its hash was made."""
    operation.execute(
        f"ALTER TABLE audit_events ADD COLUMN hash_version smallint NOT NULL "
        f"DEFAULT {HASH_VERSION_UNKEYED}"
    )
    # Writers always name the version: a row without one is not the code's.
    operation.execute("ALTER TABLE audit_events ALTER COLUMN hash_version DROP DEFAULT")
    operation.execute(
        "ALTER TABLE audit_events ADD CONSTRAINT ck_audit_events_hash_version "
        f"CHECK (hash_version IN ({HASH_VERSION_UNKEYED}, {HASH_VERSION_KEYED}))"
    )


def drop_hash_version(operation: Any) -> None:
    operation.execute("ALTER TABLE audit_events DROP COLUMN hash_version")


def drop_audit_objects(operation: Any) -> None:
    operation.execute("DROP TABLE IF EXISTS audit_events")
    operation.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")


# -- the chain (pure) -------------------------------------------------------------------


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        assert value.tzinfo is not None, "audit times are timezone-aware"
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _canonical_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(item) for item in value]
    assert not isinstance(value, float), "no floats in audit events (money is minor units)"
    return value


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTC ISO times: the same bytes for the same event, always."""
    return json.dumps(
        _canonical_value(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def chain_hash(previous_hash: str, fields: dict[str, Any], *, key: bytes | None = None) -> str:
    """The event's link: HMAC-SHA256 under `key`, or (events of unkeyed chains) SHA-256."""
    assert len(previous_hash) == 64, "hashes are hex SHA-256"
    message = previous_hash.encode() + canonical_json(fields)
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class ChainKeyMissing(RuntimeError):
    """An audit write or check without the service's chain key: a wiring mistake."""


def session_chain_key(session: AsyncSession) -> bytes:
    """The chain key the service's `Database` gives its sessions."""
    key = session.info.get(AUDIT_CHAIN_KEY_INFO)
    if not isinstance(key, bytes):
        raise ChainKeyMissing("this session's Database was opened without an audit chain key")
    return key


def keyed_connection_class(key: bytes, *, service: str) -> type[Any]:
    """For `asyncpg.create_pool(connection_class=...)`: connections that carry the chain
    key and its service, for `append_asyncpg` (a pool's connection proxy forwards them)."""
    # Imported here: kit.audit itself runs on SQLAlchemy; only the ledger's pool needs it.
    import asyncpg

    return type(
        "ChainKeyedConnection",
        (asyncpg.Connection,),
        {"audit_chain_key": key, "audit_service": service},
    )


def _connection_chain_key(connection: Any) -> bytes:
    key = getattr(connection, "audit_chain_key", None)
    if not isinstance(key, bytes):
        raise ChainKeyMissing("this asyncpg pool was created without keyed_connection_class")
    return key


_HASHED_COLUMNS: Final = (
    "sequence", "id", "occurred_at", "recorded_at", "actor_id", "actor_type", "action",
    "subject_type", "subject_id", "transfer_id", "account_ids", "workflow_id", "run_id",
    "request_id", "before", "after", "outcome", "compensates",
)  # fmt: skip


def _observe_append(service: str, started: float) -> None:
    AUDIT_APPEND_DURATION.labels(service=service).observe(time.perf_counter() - started)


def _hashed_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in _HASHED_COLUMNS}


# -- writing ----------------------------------------------------------------------------


async def append(
    session: AsyncSession,
    table: Table,
    event: AuditEventCreate,
    *,
    now: Callable[[], datetime] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Append `event` in the caller's transaction; a known id is not written twice.

    Returns the stored row's values and whether this call wrote it.
    """
    ((values, written),) = await append_many(session, table, [event], now=now)
    return values, written


async def append_many(
    session: AsyncSession,
    table: Table,
    events: Sequence[AuditEventCreate],
    *,
    now: Callable[[], datetime] | None = None,
) -> list[tuple[dict[str, Any], bool]]:
    """Append `events`, in their order, in the caller's transaction, exactly as `append`
    would one after the other (a known id, also one repeated in `events`, is written
    once), in three statements whatever their number: one lock, one look for the known
    ids and the chain's end, one INSERT.

    Returns, per event, the stored row's values and whether this call wrote it.
    """
    if not events:
        return []
    key = session_chain_key(session)
    started = time.perf_counter()
    await session.execute(_LOCK_CHAIN, {"key": _CHAIN_LOCK_KEY})
    ids = list({event.id for event in events})
    found = (await session.execute(_known_or_last(table), {"ids": ids})).all()
    known, end = _known_and_end([dict(row._mapping) for row in found], ids)
    results, rows = _chained(events, known, end=end, key=key, now=now)
    if rows:
        await session.execute(_insert(table), rows)
    _observe_append(str(session.info.get(AUDIT_SERVICE_INFO)), started)
    return results


# Statements built once: building one per append costs more CPU than running it.
_LOCK_CHAIN: Final = text("SELECT pg_advisory_xact_lock(:key)")


@functools.cache
def _known_or_last(table: Table) -> Select[Any]:
    """The events among `:ids` and the chain's last event, in one statement. Run after the
    chain lock, in a statement of its own: under READ COMMITTED its snapshot then sees the
    chain as the previous holder committed it."""
    last_sequence = select(func.max(table.c.sequence)).scalar_subquery()
    return select(table).where(
        or_(table.c.id.in_(bindparam("ids", expanding=True)), table.c.sequence == last_sequence)
    )


@functools.cache
def _insert(table: Table) -> Insert:
    return table.insert()


def _known_and_end(
    found: Sequence[dict[str, Any]], ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, dict[str, Any]], tuple[int, str]]:
    """From the rows of `_known_or_last`: the known events by id, and the chain's end (its
    last sequence and hash), the one with the highest sequence, if any."""
    wanted = set(ids)
    known = {values["id"]: values for values in found if values["id"] in wanted}
    if not found:
        return known, (0, GENESIS_HASH)
    last = max(found, key=lambda values: int(values["sequence"]))
    return known, (last["sequence"], last["hash"])


def _chained(
    events: Sequence[AuditEventCreate],
    known: dict[uuid.UUID, dict[str, Any]],
    *,
    end: tuple[int, str],
    key: bytes,
    now: Callable[[], datetime] | None,
) -> tuple[list[tuple[dict[str, Any], bool]], list[dict[str, Any]]]:
    """Each event's stored values and whether it is new, and the new rows, chained on
    from `end` (the chain's last sequence and hash); a known id (in `known`, or earlier
    in `events`) is not chained again."""
    sequence, previous_hash = end
    clock = now or (lambda: datetime.now(UTC))
    results: list[tuple[dict[str, Any], bool]] = []
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.id in known:
            results.append((known[event.id], False))
            continue
        sequence += 1
        values: dict[str, Any] = {
            **event.model_dump(),
            "actor_type": event.actor_type.value,
            "sequence": sequence,
            "recorded_at": clock(),
            "previous_hash": previous_hash,
            "hash_version": HASH_VERSION_KEYED,
        }
        values["hash"] = previous_hash = chain_hash(previous_hash, _hashed_fields(values), key=key)
        known[event.id] = values
        rows.append(values)
        results.append((values, True))
    return results, rows


_RAW_COLUMNS: Final = (*_HASHED_COLUMNS, "previous_hash", "hash", "hash_version")
# Built from module constants only, never from input.
_RAW_INSERT: Final = (
    f"INSERT INTO {AUDIT_TABLE} ({', '.join(_RAW_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(f'${index}' for index in range(1, len(_RAW_COLUMNS) + 1))})"
)


async def append_asyncpg(
    connection: Any,
    event: AuditEventCreate,
    *,
    now: Callable[[], datetime] | None = None,
) -> tuple[dict[str, Any], bool]:
    """`append` for a raw asyncpg connection inside the caller's transaction (the ledger's
    write path uses asyncpg directly). Same lock, same chain, same exactly-once rule."""
    ((values, written),) = await append_many_asyncpg(connection, [event], now=now)
    return values, written


async def append_many_asyncpg(
    connection: Any,
    events: Sequence[AuditEventCreate],
    *,
    now: Callable[[], datetime] | None = None,
) -> list[tuple[dict[str, Any], bool]]:
    """`append_many` for a raw asyncpg connection inside the caller's transaction: one
    lock, one look for the known ids and the chain's end, one batched INSERT."""
    if not events:
        return []
    key = _connection_chain_key(connection)
    started = time.perf_counter()
    await connection.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK_KEY)
    ids = list({event.id for event in events})
    # As `_known_or_last`: the known events and the chain's last one, after the lock.
    found = await connection.fetch(
        "SELECT * FROM audit_events WHERE id = ANY($1::uuid[])"
        " OR sequence = (SELECT max(sequence) FROM audit_events)",
        ids,
    )
    known, end = _known_and_end([dict(row) for row in found], ids)
    results, written = _chained(events, known, end=end, key=key, now=now)
    rows = [
        # asyncpg encodes JSONB from text; the hash was computed over the Python values.
        tuple(
            json.dumps(values[column])
            if column in ("before", "after") and values[column] is not None
            else values[column]
            for column in _RAW_COLUMNS
        )
        for values in written
    ]
    if rows:
        await connection.executemany(_RAW_INSERT, rows)
    _observe_append(str(getattr(connection, "audit_service", None)), started)
    return results


def to_contract(values: dict[str, Any] | Row[Any], *, service: str) -> AuditEvent:
    mapping = dict(values._mapping) if isinstance(values, Row) else values
    return AuditEvent(
        service=service,
        **{**mapping, "actor_type": ActorType(mapping["actor_type"])},
    )


# -- reading ----------------------------------------------------------------------------


def _filtered(
    table: Table,
    *,
    transfer_id: uuid.UUID | None,
    account_id: str | None,
    actor_id: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    statement = select(table)
    if transfer_id is not None:
        statement = statement.where(table.c.transfer_id == transfer_id)
    if account_id is not None:
        statement = statement.where(table.c.account_ids.contains([account_id]))
    if actor_id is not None:
        statement = statement.where(table.c.actor_id == actor_id)
    if action is not None:
        statement = statement.where(table.c.action == action)
    if since is not None:
        statement = statement.where(table.c.occurred_at >= since)
    if until is not None:
        statement = statement.where(table.c.occurred_at < until)
    return statement


@dataclass
class _Walk:
    """How far a verification got: the next link it expects."""

    expected_sequence: int = 1
    expected_previous: str = GENESIS_HASH
    # Once an event is keyed, every later one must be: no way back to plain SHA-256.
    keyed: bool = False
    checked: int = 0

    def advance(self, values: dict[str, Any]) -> None:
        self.checked += 1
        self.expected_sequence += 1
        self.expected_previous = values["hash"]
        self.keyed = values["hash_version"] == HASH_VERSION_KEYED


def _link_problem(
    values: dict[str, Any], walk: _Walk, *, key: bytes, checkpoint: AuditCheckpoint | None
) -> str | None:
    """Why this event does not hold as the next link of the chain, or None."""
    if values["sequence"] != walk.expected_sequence:
        return f"sequence {walk.expected_sequence} is missing"
    if values["previous_hash"] != walk.expected_previous:
        return "previous_hash does not match the preceding event"
    version = values["hash_version"]
    if version == HASH_VERSION_UNKEYED and walk.keyed:
        return "an unkeyed hash after keyed ones: the chain was rewritten without its key"
    if version not in (HASH_VERSION_UNKEYED, HASH_VERSION_KEYED):
        return f"unknown hash version {version}"
    link_key = key if version == HASH_VERSION_KEYED else None
    if chain_hash(values["previous_hash"], _hashed_fields(values), key=link_key) != values["hash"]:
        return "the event's content does not match its hash"
    pinned = checkpoint is not None and values["sequence"] == checkpoint.sequence
    if pinned and checkpoint is not None and values["hash"] != checkpoint.hash:
        return f"the event is not the one checkpointed at {_moment(checkpoint)}"
    return None


def _moment(checkpoint: AuditCheckpoint) -> str:
    return checkpoint.published_at.astimezone(UTC).isoformat(timespec="seconds")


async def _events_in_order(session: AsyncSession, table: Table) -> AsyncIterator[dict[str, Any]]:
    after_sequence = 0
    while True:
        rows = (
            await session.execute(
                select(table)
                .where(table.c.sequence > after_sequence)
                .order_by(table.c.sequence)
                .limit(_VERIFY_BATCH_SIZE)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        after_sequence = rows[-1].sequence


def _checked_checkpoint(
    checkpoints: CheckpointDirectory | None, *, key: bytes, service: str
) -> tuple[AuditCheckpoint | None, AuditVerification | None]:
    """The newest checkpoint, or the verdict when it is not one this service signed."""
    latest = None if checkpoints is None else checkpoints.latest()
    if latest is None:
        return None, None
    checkpoint = latest.checkpoint
    if checkpoint is None or checkpoint.service != service:
        signed = False
    else:
        signed = checkpoint_is_signed(key, checkpoint)
    if not signed:
        return None, AuditVerification(
            service=service,
            events_checked=0,
            ok=False,
            reason=f"the checkpoint of sequence {latest.sequence} is not signed by this service",
            checkpoint_sequence=latest.sequence,
        )
    return checkpoint, None


async def verify_chain(
    session: AsyncSession,
    table: Table,
    *,
    service: str,
    checkpoints: CheckpointDirectory | None = None,
) -> AuditVerification:
    """Recompute every link in insertion order under the session's chain key, hold the
    chain against the newest checkpoint; report the first link that does not hold, or the
    events the checkpoint saw that are gone."""
    key = session_chain_key(session)
    checkpoint, refused = await asyncio.to_thread(
        _checked_checkpoint, checkpoints, key=key, service=service
    )
    if refused is not None:
        return refused
    pinned: dict[str, Any] = {}
    if checkpoint is not None:
        pinned = {
            "checkpoint_sequence": checkpoint.sequence,
            "checkpoint_published_at": checkpoint.published_at,
        }
    walk = _Walk()
    async for values in _events_in_order(session, table):
        reason = _link_problem(values, walk, key=key, checkpoint=checkpoint)
        if reason is not None:
            return AuditVerification(
                service=service, events_checked=walk.checked, ok=False,
                first_broken_event_id=values["id"], first_broken_sequence=values["sequence"],
                reason=reason, **pinned,
            )  # fmt: skip
        walk.advance(values)
    if checkpoint is not None and walk.expected_sequence <= checkpoint.sequence:
        first, last = walk.expected_sequence, checkpoint.sequence
        return AuditVerification(
            service=service, events_checked=walk.checked, ok=False,
            first_broken_sequence=first, missing_from_sequence=first, missing_to_sequence=last,
            reason=f"events {first}..{last} are missing: the checkpoint of "
            f"{_moment(checkpoint)} saw them",
            **pinned,
        )  # fmt: skip
    return AuditVerification(service=service, events_checked=walk.checked, ok=True, **pinned)


# -- checkpoints ------------------------------------------------------------------------

CHECKPOINT_JOB_NAME: Final = "audit-checkpoint"
# Every service's table has this one shape and name: the job needs no service's models.
_CHECKPOINTED_TABLE: Final = _audit_table(MetaData(), hash_version=True)


async def publish_checkpoint(
    database: Database,
    *,
    service: str,
    checkpoints: CheckpointDirectory,
    now: Callable[[], datetime],
) -> AuditCheckpoint | None:
    """Sign and publish the chain's head unless a checkpoint has it already; returns the
    checkpoint this call wrote, if any. Idempotent: replicas may race on the same head."""
    table = _CHECKPOINTED_TABLE
    async with database.sessions() as session:
        key = session_chain_key(session)
        head = (
            await session.execute(
                select(table.c.sequence, table.c.hash).order_by(table.c.sequence.desc()).limit(1)
            )
        ).first()
    if head is None or await asyncio.to_thread(checkpoints.has, head.sequence):
        return None
    latest = await asyncio.to_thread(checkpoints.latest)
    if latest is not None and latest.sequence > head.sequence:
        # The chain is shorter than a checkpoint already saw: `verify` names what is gone;
        # a newer, shorter checkpoint would not hide it, but it is not something to sign.
        log.error(
            "audit.chain_behind_checkpoint", sequence=head.sequence, checkpoint=latest.sequence
        )
        return None
    checkpoint = sign_checkpoint(
        key, service=service, sequence=head.sequence, head_hash=head.hash, published_at=now()
    )
    if not await asyncio.to_thread(checkpoints.publish, checkpoint):
        return None
    log.info("audit.checkpoint_published", sequence=checkpoint.sequence)
    return checkpoint


def checkpoint_job(
    database: Database,
    *,
    service: str,
    checkpoints: CheckpointDirectory,
    dsn: str,
    interval_seconds: float,
) -> ExclusiveJob:
    """The periodic publisher of `service`'s checkpoints, in one replica at a time."""

    async def run_once() -> None:
        await publish_checkpoint(
            database, service=service, checkpoints=checkpoints, now=lambda: datetime.now(UTC)
        )

    return ExclusiveJob(
        name=CHECKPOINT_JOB_NAME, dsn=dsn, interval_seconds=interval_seconds, run_once=run_once
    )


def checkpoints_of(request: Request) -> CheckpointDirectory | None:
    """Where the service shell (kit.app) keeps this service's checkpoints, if anywhere."""
    checkpoints = getattr(request.app.state, "audit_checkpoints", None)
    return checkpoints if isinstance(checkpoints, CheckpointDirectory) else None


def audit_router(*, service: str, table: Table) -> APIRouter:
    """`GET /v1/admin/audit-events`, `/verify` and `/export`, for callers with `audit:read`."""
    router = APIRouter(tags=["audit"])
    AuditReader = Annotated[Principal, Depends(require_scopes(Scope.audit_read))]
    auth_problems = problem_responses(Unauthorized, Forbidden)
    list_problems = problem_responses(Unauthorized, Forbidden, InvalidCursor)

    @router.get(
        AUDIT_EVENTS_PATH,
        summary="Audit events, filtered, oldest first, cursor-paginated",
        responses=list_problems,
    )
    async def list_audit_events(
        _principal: AuditReader,
        session: Session,
        transfer_id: uuid.UUID | None = None,
        account_id: Annotated[str | None, Query(max_length=64)] = None,
        actor_id: Annotated[str | None, Query(max_length=64)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[Limit, Le(AUDIT_LIMIT_MAX)] = 100,
        cursor: Cursor = None,
    ) -> Page[AuditEvent]:
        statement = _filtered(
            table, transfer_id=transfer_id, account_id=account_id, actor_id=actor_id,
            action=action, since=since, until=until,
        )  # fmt: skip
        if cursor is not None:
            statement = statement.where(table.c.sequence > decode_sequence(cursor))
        statement = statement.order_by(table.c.sequence).limit(fetch_limit(limit))
        rows, next_cursor = cut_page(
            (await session.execute(statement)).all(),
            limit=limit,
            cursor_of=lambda row: encode_sequence(row.sequence),
        )
        items = [to_contract(row, service=service) for row in rows]
        return Page[AuditEvent](items=items, next_cursor=next_cursor)

    @router.get(
        AUDIT_VERIFY_PATH,
        summary="Recompute the keyed hash chain, hold it against the newest checkpoint, and "
        "report the first break or the events missing after the checkpoint",
        responses=auth_problems,
    )
    async def verify_audit_events(
        _principal: AuditReader, session: Session, request: Request
    ) -> AuditVerification:
        return await verify_chain(
            session, table, service=service, checkpoints=checkpoints_of(request)
        )

    @router.get(
        AUDIT_EXPORT_PATH,
        summary="Stream audit events of a time range as NDJSON",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}, **auth_problems},
    )
    async def export_audit_events(
        _principal: AuditReader,
        database: ServiceDatabase,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> StreamingResponse:
        lines = _export_lines(database, table, service=service, since=since, until=until)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    return router


async def _export_lines(
    database: Database,
    table: Table,
    *,
    service: str,
    since: datetime | None,
    until: datetime | None,
) -> AsyncIterator[bytes]:
    """The events of [since, until) as NDJSON lines, oldest first, in bounded batches."""
    after_sequence = 0
    while True:
        # A session per batch: a long export must not hold one transaction open.
        async with database.sessions() as session:
            statement = _filtered(
                table, transfer_id=None, account_id=None, actor_id=None, action=None,
                since=since, until=until,
            )  # fmt: skip
            rows = (
                await session.execute(
                    statement.where(table.c.sequence > after_sequence)
                    .order_by(table.c.sequence)
                    .limit(_EXPORT_BATCH_SIZE)
                )
            ).all()
        if not rows:
            return
        for row in rows:
            yield to_contract(row, service=service).model_dump_json().encode() + b"\n"
        after_sequence = rows[-1].sequence
