"""Use cases of the transactions service."""

import asyncio
import functools
import hashlib
import itertools
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.common import Identifier, Page
from contracts.reversals import REVERSAL_FAILED_STATUSES
from contracts.transfers import (
    PREFER_WAIT_SECONDS_MAX,
    TRANSFER_BATCH_SIZE_MAX,
    CancelRequest,
    FraudAssessment,
    ReviewDecision,
    ReviewRequest,
    StepRecord,
    Transfer,
    TransferBatchItem,
    TransferCreate,
    TransferStatus,
    TransferStep,
    workflow_id,
)
from kit.audit import Actor
from kit.auth import Principal
from kit.db import Database, after_commit
from kit.errors import InvalidRequest, ProblemError
from kit.pagination import cut_page, decode_position, encode_position, fetch_limit
from kit.params import required_idempotency_key
from transactions import audit, metrics, repository, reversal_repository
from transactions.accounts_client import SourceAccounts
from transactions.changes import (
    IDEMPOTENCY_KEY_SETTLED_CHANNEL,
    TRANSFER_FINISHED_CHANNEL,
    ChangeListener,
    idempotency_key_payload,
)
from transactions.errors import (
    BatchItemFailed,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    PreferWaitInvalid,
    SameAccount,
    TransferNotCancellable,
    TransferNotFound,
    TransferNotInReview,
)
from transactions.models import IdempotencyKeyRow, TransferRow, TransferStepRow
from transactions.workflow_client import CancelRefused, TransferWorkflows

log = structlog.get_logger()

IDEMPOTENCY_KEY_TTL: Final = timedelta(hours=24)
# Longer than a create can take (database command timeout + Temporal RPC timeout), so a
# live holder never loses its claim; after it, the claim of a crashed holder is resumable.
IDEMPOTENCY_LEASE: Final = timedelta(seconds=60)
_IN_FLIGHT_RETRY_AFTER_SECONDS: Final = 1
# The step after which a transfer can no longer be cancelled (the saga's pivot).
PIVOT_STEP: Final = "post"
# Batch items created at once: enough to overlap Temporal round trips, few enough to
# leave the connection pool to other requests.
BATCH_CONCURRENCY_MAX: Final = 8
_WAIT_VALUE: Final = re.compile(r"[0-9]{1,4}")
# The idempotency_keys.caller column holds 64 characters.
_CALLER_LENGTH_MAX: Final = 64


@dataclass(frozen=True)
class Requester:
    """Who asks, as the use cases need it: the verified principal, the request id (for the
    audit trail) and, for a create, the raw Authorization header forwarded to accounts."""

    principal: Principal
    request_id: str | None = None
    authorization: str | None = None

    @property
    def actor(self) -> Actor:
        """The requester as its audit events record them."""
        return Actor.of(self.principal, request_id=self.request_id)


def caller_key(principal: Principal) -> str:
    """The idempotency-key space of a caller: one per principal kind and subject, so two
    callers never share a key; a subject too long for the column is named by its hash."""
    caller = f"{principal.kind.value}:{principal.subject}"
    if len(caller) <= _CALLER_LENGTH_MAX:
        return caller
    digest = hashlib.sha256(principal.subject.encode()).hexdigest()[:48]
    return f"{principal.kind.value}:sha256:{digest}"


@dataclass(frozen=True)
class IdempotencyPolicy:
    """How long keys live, how long a claim is leased, how long a duplicate waits."""

    ttl: timedelta = IDEMPOTENCY_KEY_TTL
    lease: timedelta = IDEMPOTENCY_LEASE
    in_flight_wait_seconds: float = 5.0

    def __post_init__(self) -> None:
        assert self.ttl >= IDEMPOTENCY_KEY_TTL, "keys are kept at least 24 hours"
        assert self.lease > timedelta(0)
        assert self.in_flight_wait_seconds >= 0


@dataclass(frozen=True)
class TransferCreation:
    """The answer to a create: the stored response, and whether it is a replay."""

    transfer_id: uuid.UUID
    status_code: int
    body: dict[str, Any]
    replayed: bool


def request_hash(transfer: BaseModel) -> str:
    """SHA-256 of the canonical JSON of the parsed body: equal requests, equal hashes,
    however their JSON was spelt (key order, spacing, omitted defaults)."""
    fields = transfer.model_dump(mode="json")
    # Absent, as before future-dated transfers: keys stored before keep their hashes.
    if fields.get("execute_at", "") is None:
        del fields["execute_at"]
    return canonical_hash(fields)


def canonical_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of `fields` as canonical JSON (sorted keys, no spaces): what a stored
    Idempotency-Key's request hash is computed from."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def step_views(steps: Sequence[TransferStepRow]) -> list[TransferStep]:
    """A transfer's (or a reversal's) recorded steps, as the API shows them."""
    return [
        TransferStep(
            name=step.step, outcome=step.outcome, occurred_at=step.occurred_at, detail=step.detail
        )
        for step in steps
    ]


def _to_contract(row: TransferRow, steps: Sequence[TransferStepRow]) -> Transfer:
    return Transfer(
        id=row.id,
        workflow_id=workflow_id(row.id),
        status=TransferStatus(row.status),
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        metadata=row.metadata_,
        steps=step_views(steps),
        fraud=None if row.fraud is None else FraudAssessment.model_validate(row.fraud),
        hold_id=row.hold_id,
        posting_id=row.posting_id,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        reversal_of=row.reversal_of,
        execute_at=row.execute_at,
    )


async def _load_transfer(session: AsyncSession, transfer_id: uuid.UUID) -> Transfer:
    row = await repository.get_transfer(session, transfer_id)
    if row is None:
        raise TransferNotFound(f"no transfer {transfer_id}")
    return _to_contract(row, await repository.list_steps(session, [row.id]))


def visible_to(row: TransferRow, principal: Principal) -> bool:
    """A customer sees only the transfers they created; operators and services (through
    their scopes) see every one."""
    return principal.customer_id is None or row.customer_id == principal.customer_id


async def _load_visible(
    session: AsyncSession, transfer_id: uuid.UUID, principal: Principal
) -> tuple[TransferRow, Transfer]:
    """The transfer if `principal` may see it; a foreign one answers exactly as a missing one."""
    row = await repository.get_transfer(session, transfer_id)
    if row is None or not visible_to(row, principal):
        raise TransferNotFound(f"no transfer {transfer_id}")
    return row, _to_contract(row, await repository.list_steps(session, [row.id]))


def _replay(row: IdempotencyKeyRow) -> TransferCreation:
    assert row.response_status is not None, "a completed key stores its response"
    assert row.response_body is not None, "a completed key stores its response"
    log.info("transfer.create_replayed", transfer_id=str(row.transfer_id))
    return TransferCreation(
        transfer_id=row.transfer_id,
        status_code=row.response_status,
        body=row.response_body,
        replayed=True,
    )


def _answer_existing_key(row: IdempotencyKeyRow, hash_of_request: str) -> TransferCreation | None:
    """The stored answer for a settled key; None while the first request is in flight."""
    if row.request_hash != hash_of_request:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with another request body; use a new key"
        )
    if row.state == repository.COMPLETED:
        return _replay(row)
    return None


async def _claim(
    database: Database,
    policy: IdempotencyPolicy,
    *,
    caller: str,
    key: str,
    hash_of_request: str,
) -> uuid.UUID | TransferCreation | None:
    """One attempt: our transfer id if we hold the claim now, the stored answer if the
    key is settled, None while another request holds it."""
    async with database.sessions() as session, session.begin():
        transfer_id = await repository.claim_idempotency_key(
            session,
            caller=caller,
            key=key,
            request_hash=hash_of_request,
            transfer_id=uuid.uuid4(),
            ttl=policy.ttl,
            lease=policy.lease,
        )
        if transfer_id is not None:
            return transfer_id
        existing = await repository.get_idempotency_key(session, caller=caller, key=key)
    # Gone between the two statements (purged when expired): the next attempt claims it.
    return None if existing is None else _answer_existing_key(existing, hash_of_request)


# Unlike every other use case, creating a transfer commits by itself, in three short
# transactions, because one request-wide transaction cannot do the job:
# - the key is claimed and committed first, so a concurrent request with the same key sees
#   it in flight instead of blocking on an uncommitted row or racing past;
# - the transfer row is committed before its workflow starts, so the saga's first step
#   report never finds it missing;
# - the response is stored and the key completed only once the workflow has started.
# A duplicate that finds the key in flight waits (bounded, woken by NOTIFY when the key
# settles) and replays the stored answer, so concurrent duplicates all answer alike; only a
# first request still running after the wait makes it answer 409. If anything fails after
# the claim, the claim is released and keeps its transfer id, so a retry (or a waiting
# duplicate) resumes this very transfer instead of creating a second one.
async def create_transfer(
    database: Database,
    workflows: TransferWorkflows,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    accounts: SourceAccounts,
    *,
    requester: Requester,
    idempotency_key: str | None,
    transfer: TransferCreate,
) -> TransferCreation:
    """Create a transfer and start its saga, at most once per (caller, idempotency key).

    The caller's ownership of the source account is checked with the accounts service
    while the claim is held, before anything is created: a 404 (foreign or missing
    account) or a 503 (accounts away) leaves no trace, the key included.
    """
    principal = requester.principal
    caller = caller_key(principal)
    idempotency_key = _required_key(idempotency_key, transfer)
    workflows.check_execute_at(transfer, datetime.now(UTC))
    hash_of_request = request_hash(transfer)
    outcome = await claim_or_wait(
        database,
        changes,
        policy,
        caller=caller,
        key=idempotency_key,
        hash_of_request=hash_of_request,
    )
    if isinstance(outcome, TransferCreation):
        return outcome
    transfer_id = outcome
    structlog.contextvars.bind_contextvars(
        transfer_id=str(transfer_id), workflow_id=workflow_id(transfer_id)
    )
    try:
        await accounts.check_owned(
            account_id=transfer.source_account_id,
            authorization=requester.authorization or "",
            principal=principal,
        )
    except BaseException:
        await abandon_claim(database, caller=caller, key=idempotency_key, transfer_id=transfer_id)
        raise
    try:
        created, requested_at = await _record_transfer(
            database, transfer_id=transfer_id, transfer=transfer, requester=requester
        )
        await workflows.start(
            transfer_id=transfer_id,
            transfer=transfer,
            source_customer_id=principal.customer_id,
            requested_at=requested_at,
        )
        body, taken_over = await _complete_claim(
            database, caller=caller, key=idempotency_key, transfer_id=transfer_id
        )
    except BaseException:
        await release_claim(database, caller=caller, key=idempotency_key, transfer_id=transfer_id)
        raise
    if taken_over is not None:
        return answer_of_the_retry(taken_over, hash_of_request)
    log.info(
        "transfer.created" if created else "transfer.create_resumed",
        amount_minor=transfer.amount_minor,
        currency=transfer.currency,
    )
    return TransferCreation(transfer_id=transfer_id, status_code=202, body=body, replayed=False)


def _required_key(idempotency_key: str | None, transfer: TransferCreate) -> str:
    """The request's key, once the request is one a key can be claimed for."""
    key = required_idempotency_key(idempotency_key)
    if transfer.source_account_id == transfer.target_account_id:
        raise SameAccount("a transfer needs two different accounts")
    return key


async def claim_or_wait(
    database: Database,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    *,
    caller: str,
    key: str,
    hash_of_request: str,
) -> uuid.UUID | TransferCreation:
    """Our transfer id once we hold the key's claim, or the stored answer once the key is
    settled; a first request still in flight after the (bounded) wait answers 409."""

    async def claim_or_answer() -> uuid.UUID | TransferCreation | None:
        return await _claim(
            database, policy, caller=caller, key=key, hash_of_request=hash_of_request
        )

    outcome: uuid.UUID | TransferCreation | None = await changes.wait_for(
        claim_or_answer,
        channel=IDEMPOTENCY_KEY_SETTLED_CHANNEL,
        payload=idempotency_key_payload(caller, key),
        timeout_seconds=policy.in_flight_wait_seconds,
    )
    if outcome is None:
        raise IdempotencyKeyInFlight(
            "the first request with this key is still being processed; retry shortly",
            retry_after_seconds=_IN_FLIGHT_RETRY_AFTER_SECONDS,
        )
    return outcome


async def _complete_claim(
    database: Database, *, caller: str, key: str, transfer_id: uuid.UUID
) -> tuple[dict[str, Any], IdempotencyKeyRow | None]:
    """Record the started saga and store the answer under the key: the answer, and the key
    as a retry left it if that retry, having taken over our expired lease, finished first."""
    async with database.sessions() as session, session.begin():
        # If this process dies before here, the reconciler finds the transfer and starts
        # it again: a no-op on the saga that runs (the same workflow id).
        await repository.mark_saga_started(session, transfer_id=transfer_id)
        body = (await _load_transfer(session, transfer_id)).model_dump(mode="json")
        completed = await repository.complete_idempotency_key(
            session,
            caller=caller,
            key=key,
            transfer_id=transfer_id,
            response_status=202,
            response_body=body,
        )
        if completed:
            return body, None
        return body, await repository.get_idempotency_key(session, caller=caller, key=key)


def answer_of_the_retry(stored: IdempotencyKeyRow, hash_of_request: str) -> TransferCreation:
    """Our lease ran out and a retry of the same request finished first; both created the
    same transfer, so its stored answer is ours as well."""
    answer = _answer_existing_key(stored, hash_of_request)
    if answer is None:
        raise IdempotencyKeyInFlight(
            "a retry of this request took over its key and is still being processed",
            retry_after_seconds=_IN_FLIGHT_RETRY_AFTER_SECONDS,
        )
    return answer


async def _record_transfer(
    database: Database, *, transfer_id: uuid.UUID, transfer: TransferCreate, requester: Requester
) -> tuple[bool, datetime]:
    """Commit the transfer and its `transfer.requested` event, unless an earlier attempt of
    this request did; whether this call created it, and when it was recorded."""
    principal = requester.principal
    async with database.sessions() as session, session.begin():
        created, requested_at = await repository.insert_transfer(
            session, transfer_id=transfer_id, transfer=transfer, customer_id=principal.customer_id
        )
        if created:
            await repository.append_audit(
                session,
                audit.transfer_requested(
                    transfer_id=transfer_id,
                    transfer=transfer,
                    actor=requester.actor,
                ),
            )
    if created:
        # Committed above; a retry of this request finds the transfer and counts nothing.
        metrics.TRANSFERS_STARTED.labels(currency=transfer.currency).inc()
    return created, requested_at


async def wait_until_finished(
    database: Database,
    changes: ChangeListener,
    *,
    transfer_id: uuid.UUID,
    wait_seconds: int,
) -> Transfer | None:
    """The transfer once it reaches a terminal status within `wait_seconds`, else None.

    Woken by the NOTIFY of the step report that finishes it (not by Temporal's result
    long-poll, which adds ~190 ms), with a periodic re-read as the safety net.
    """
    assert 0 <= wait_seconds <= PREFER_WAIT_SECONDS_MAX

    async def finished() -> Transfer | None:
        async with database.sessions() as session:
            transfer = await _load_transfer(session, transfer_id)
        return transfer if transfer.status.is_terminal else None

    return await changes.wait_for(
        finished,
        channel=TRANSFER_FINISHED_CHANNEL,
        payload=str(transfer_id),
        timeout_seconds=wait_seconds,
    )


def parse_prefer_wait(prefer: str | None) -> int | None:
    """The `wait` preference of a Prefer header (RFC 7240) in seconds, or None.

    Other preferences are ignored, as the RFC asks; the first `wait` counts. A `wait`
    that is not a whole number of seconds from 0 to 30 is refused, not silently cut.
    """
    if prefer is None:
        return None
    for preference in prefer.split(","):
        token, separator, value = preference.split(";", 1)[0].partition("=")
        if token.strip().lower() != "wait":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not separator or not _WAIT_VALUE.fullmatch(value):
            raise PreferWaitInvalid(
                f"Prefer: wait takes whole seconds, 0 to {PREFER_WAIT_SECONDS_MAX}"
            )
        seconds = int(value)
        if seconds > PREFER_WAIT_SECONDS_MAX:
            raise PreferWaitInvalid(
                f"Prefer: wait={seconds} is longer than the {PREFER_WAIT_SECONDS_MAX} s allowed"
            )
        return seconds
    return None


async def create_transfers_batch(
    database: Database,
    workflows: TransferWorkflows,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    accounts: SourceAccounts,
    *,
    requester: Requester,
    items: Sequence[object],
    admit: Callable[[], Awaitable[object]],
) -> list[TransferCreation | ProblemError]:
    """Create each item as a single POST would, a few at a time; one answer per item, in
    the items' order. A bad item gets its own problem; the others go on.

    `admit` counts one well-formed item against the caller's rate (raising 429 when over
    it), so a batch of 100 weighs as much as 100 single POSTs."""
    assert len(items) <= TRANSFER_BATCH_SIZE_MAX
    limiter = asyncio.Semaphore(BATCH_CONCURRENCY_MAX)

    async def one(item: object) -> TransferCreation | ProblemError:
        try:
            parsed = TransferBatchItem.model_validate(item)
        except ValidationError as error:
            return InvalidRequest.of_validation(error, "the item is malformed")
        try:
            await admit()
        except ProblemError as error:
            return error
        async with limiter:
            try:
                return await create_transfer(
                    database,
                    workflows,
                    changes,
                    policy,
                    accounts,
                    requester=requester,
                    idempotency_key=parsed.idempotency_key,
                    transfer=parsed.to_create(),
                )
            except ProblemError as error:
                return error
            except Exception:
                log.exception("transfer.batch_item_failed")
                return BatchItemFailed("this item failed unexpectedly; retry it with its key")

    return list(await asyncio.gather(*(one(item) for item in items)))


async def purge_expired_idempotency_keys(
    database: Database, *, batch_size: int, batches_max: int
) -> int:
    """Delete expired keys in short transactions of `batch_size`; at most `batches_max`
    per call, so one call never runs long. The number deleted."""
    assert batch_size > 0
    assert batches_max > 0
    purged = 0
    for _ in range(batches_max):
        async with database.sessions() as session, session.begin():
            deleted = await repository.purge_expired_idempotency_keys(session, limit=batch_size)
        purged += deleted
        if deleted < batch_size:
            break
    if purged:
        log.info("idempotency.keys_purged", count=purged)
    return purged


async def abandon_claim(
    database: Database, *, caller: str, key: str, transfer_id: uuid.UUID
) -> None:
    """Give up a claim before anything was created under it: delete it, so the key is
    free again; a claim resumed from an earlier attempt that did create the transfer is
    only released."""
    try:
        async with database.sessions() as session, session.begin():
            forgotten = await repository.forget_idempotency_key(
                session, caller=caller, key=key, transfer_id=transfer_id
            )
    except Exception:
        # The lease still ends on its own; a retry may then resume the claim.
        log.exception("idempotency.forget_failed")
        return
    if not forgotten:
        await release_claim(database, caller=caller, key=key, transfer_id=transfer_id)


async def release_claim(
    database: Database, *, caller: str, key: str, transfer_id: uuid.UUID
) -> None:
    try:
        async with database.sessions() as session, session.begin():
            await repository.release_idempotency_key(
                session, caller=caller, key=key, transfer_id=transfer_id
            )
    except Exception:
        # The lease still ends on its own; a retry may then resume the claim.
        log.exception("idempotency.release_failed")


async def get_transfer(
    session: AsyncSession, *, transfer_id: uuid.UUID, viewer: Principal
) -> Transfer:
    _row, transfer = await _load_visible(session, transfer_id, viewer)
    (shown,) = await with_reversals(session, [transfer])
    return shown


async def with_reversals(session: AsyncSession, transfers: list[Transfer]) -> list[Transfer]:
    """The transfers with their reversals' ids and what those moved back or are moving
    (failed reversals free their amount), in one query for all of them."""
    reversals = await reversal_repository.list_reversals(
        session, [transfer.id for transfer in transfers]
    )
    if not reversals:
        return transfers
    failed = {status.value for status in REVERSAL_FAILED_STATUSES}
    by_original: dict[uuid.UUID, list[TransferRow]] = defaultdict(list)
    for row in reversals:
        assert row.reversal_of is not None, "listed by the transfer it reverses"
        by_original[row.reversal_of].append(row)
    return [
        transfer.model_copy(
            update={
                "reversed_minor": sum(row.amount_minor for row in rows if row.status not in failed),
                "reversal_ids": [row.id for row in rows],
            }
        )
        if (rows := by_original.get(transfer.id))
        else transfer
        for transfer in transfers
    ]


async def list_transfers(
    session: AsyncSession,
    *,
    viewer: Principal,
    status: TransferStatus | None,
    account_id: uuid.UUID | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page[Transfer]:
    """One page of the transfers `viewer` may see (a customer: their own), newest first;
    pass `next_cursor` back for the next."""
    rows = await repository.list_transfers(
        session,
        customer_id=viewer.customer_id,
        status=status,
        account_id=account_id,
        created_after=created_after,
        created_before=created_before,
        after=None if cursor is None else decode_position(cursor),
        limit=fetch_limit(limit),
    )
    page_rows, next_cursor = cut_page(
        rows, limit=limit, cursor_of=lambda row: encode_position(row.created_at, row.id)
    )
    steps_by_transfer: dict[uuid.UUID, list[TransferStepRow]] = defaultdict(list)
    for step in await repository.list_steps(session, [row.id for row in page_rows]):
        steps_by_transfer[step.transfer_id].append(step)
    items = [_to_contract(row, steps_by_transfer[row.id]) for row in page_rows]
    return Page[Transfer](items=await with_reversals(session, items), next_cursor=next_cursor)


async def record_step(
    session: AsyncSession, *, transfer_id: uuid.UUID, record: StepRecord, requester: Requester
) -> Transfer:
    """Apply one step report of the saga: the step is written once, with its audit event
    in the same transaction, and the projection moves only to a newer version, so retried
    and late reports never move it back nor write a second event."""
    return await record_steps(
        session, transfer_id=transfer_id, records=[record], requester=requester
    )


async def record_steps(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    records: Sequence[StepRecord],
    requester: Requester,
) -> Transfer:
    """Apply consecutive step reports (oldest first) in one transaction, each one exactly
    as `record_step` would apply it alone: a batch retried, or overlapping one already
    applied, writes only the steps that are new."""
    assert records, "a report holds at least one step"
    first = records[0]
    structlog.contextvars.bind_contextvars(
        transfer_id=str(transfer_id), workflow_id=first.workflow_id or workflow_id(transfer_id)
    )
    for record in records:
        _check_step_record(record)
    versions = [record.version for record in records]
    if any(later <= earlier for earlier, later in itertools.pairwise(versions)):
        raise InvalidRequest("the steps of a report come oldest first, versions increasing")
    row = await repository.get_transfer(session, transfer_id)
    if row is None:
        raise TransferNotFound(f"no transfer {transfer_id}")
    status_before, version_before = row.status, row.version
    actor = requester.actor
    events: list[AuditEventCreate] = []
    recorded = await repository.insert_steps(session, transfer_id=transfer_id, records=records)
    for record, step_recorded in zip(records, recorded, strict=True):
        moved = await repository.update_projection(session, transfer_id=transfer_id, record=record)
        if step_recorded:
            # A retried report (the step already recorded) writes nothing new; its event
            # id is the same anyway.
            events.append(
                audit.step_reported(
                    transfer_id=transfer_id,
                    source_account_id=row.source_account_id,
                    target_account_id=row.target_account_id,
                    record=record,
                    status_before=status_before,
                    version_before=version_before,
                    actor=actor,
                    reversal_of=row.reversal_of,
                )
            )
        if moved is not None:
            status_before, version_before = record.status.value, record.version
            _count_if_ended(session, record, moved)
        log.info(
            "transfer.step_reported",
            step=record.step,
            outcome=record.outcome,
            status=record.status.value,
            version=record.version,
            step_recorded=step_recorded,
            projection_moved=moved is not None,
        )
    # The UPDATE went around the session's identity map; read the row afresh.
    session.expire_all()
    transfer = await _load_transfer(session, transfer_id)
    # Last in the transaction: the append serialises on the trail's chain lock, which is
    # then held only until the commit that follows.
    await repository.append_audit_events(session, events)
    return transfer


def _count_if_ended(
    session: AsyncSession, record: StepRecord, moved: repository.ProjectionMove
) -> None:
    """Count the transfer's end once the move into a terminal status commits: a retried
    or racing report of the same end moves nothing out of pending, so counts nothing."""
    if record.status.is_terminal and not moved.status_before.is_terminal:
        after_commit(
            session,
            functools.partial(
                metrics.count_ended, record.status.value, moved.since_created_seconds
            ),
        )


def _check_step_record(record: StepRecord) -> None:
    if not audit.STEP_NAME.fullmatch(record.step):
        raise InvalidRequest("a step name is lower-case letters, digits, `_` and `-`")
    if record.occurred_at.tzinfo is None:
        raise InvalidRequest("occurred_at needs a time zone offset")
    if record.compensates_step is not None and not audit.STEP_NAME.fullmatch(
        record.compensates_step
    ):
        raise InvalidRequest("compensates_step names a step")


async def cancel_transfer(
    database: Database,
    workflows: TransferWorkflows,
    *,
    transfer_id: uuid.UUID,
    request: CancelRequest,
    requester: Requester,
) -> Transfer:
    """Cancel a transfer of the caller's that has not reached its pivot (posting), scheduled
    or started, through the saga's `request_cancel` update: the saga itself decides, and 409
    is its refusal.
    Both answers are audited (`transfer.cancel_requested`, accepted or refused)."""
    structlog.contextvars.bind_contextvars(
        transfer_id=str(transfer_id), workflow_id=workflow_id(transfer_id)
    )
    # Short reads around the update: no connection idles in a transaction while the
    # saga (and a worker) answers.
    async with database.sessions() as session:
        _row, transfer = await _load_visible(session, transfer_id, requester.principal)
        posting_begun = await repository.step_exists(
            session, transfer_id=transfer_id, step=PIVOT_STEP
        )
    refusal: str | None = None
    if transfer.reversal_of is not None:
        # ReversalWorkflow takes no cancel (docs/decisions/0032-reversals.md).
        refusal = "a reversal has no cancel: it ends by itself"
    elif transfer.status.is_terminal:
        refusal = f"the transfer is already {transfer.status.value}"
    elif posting_begun:
        refusal = "the transfer is being posted"
    else:
        # A scheduled transfer too: the update wakes its delayed workflow, and the saga ends
        # it before its first step, announced (docs/decisions/0034-future-dated-transfers.md).
        try:
            await workflows.request_cancel(transfer_id=transfer_id, request=request)
        except CancelRefused as refused:
            refusal = refused.reason
    event = audit.cancel_requested(
        transfer_id=transfer_id,
        source_account_id=transfer.source_account_id,
        target_account_id=transfer.target_account_id,
        status_before=transfer.status.value,
        request=request,
        refusal=refusal,
        actor=requester.actor,
    )
    async with database.sessions() as session, session.begin():
        await repository.append_audit(session, event)
    if refusal is not None:
        raise TransferNotCancellable(refusal)
    async with database.sessions() as session:
        return await _load_transfer(session, transfer_id)


_REVIEWER_ID: Final = TypeAdapter(Identifier)


def reviewer_id(actor: Actor) -> str:
    """The reviewer a verdict names: the caller as the audit trail names it, or that
    name's hash where it has characters a reviewer id cannot carry."""
    try:
        return _REVIEWER_ID.validate_python(actor.actor_id)
    except ValidationError:
        return "sha256:" + hashlib.sha256(actor.actor_id.encode()).hexdigest()[:56]


async def review_transfer(
    session: AsyncSession,
    workflows: TransferWorkflows,
    *,
    transfer_id: uuid.UUID,
    request: ReviewRequest,
    requester: Requester,
) -> Transfer:
    """Hand a reviewer's verdict to the saga of a transfer waiting in review, the token's
    subject named as its reviewer, audited as `transfer.review_decided` in the request's
    transaction."""
    structlog.contextvars.bind_contextvars(
        transfer_id=str(transfer_id), workflow_id=workflow_id(transfer_id)
    )
    decision = ReviewDecision(
        decision=request.decision, reviewer_id=reviewer_id(requester.actor), note=request.note
    )
    transfer = await _load_transfer(session, transfer_id)
    if transfer.status != TransferStatus.in_review:
        raise TransferNotInReview(f"the transfer is {transfer.status.value}")
    if not await workflows.signal_review_decision(transfer_id=transfer_id, decision=decision):
        raise TransferNotInReview("the transfer's workflow has already finished")
    # After the signal, not before: the append takes the trail's chain lock, which must not
    # wait on a Temporal round trip. A signal refused above leaves no event.
    await repository.append_audit(
        session,
        audit.review_decided(
            transfer_id=transfer_id,
            source_account_id=transfer.source_account_id,
            target_account_id=transfer.target_account_id,
            decision=decision,
            actor=requester.actor,
        ),
    )
    log.info(
        "transfer.review_decided", decision=decision.decision, reviewer_id=decision.reviewer_id
    )
    return transfer
