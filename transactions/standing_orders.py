"""Use cases of standing orders: recurring transfers, each run by its own Temporal Schedule.

An order is created like a transfer (the same idempotency claim, the source account's
ownership checked with accounts), then its schedule; each occurrence creates an ordinary
transfer through `service.create_transfer`, under a key derived from the order and the
scheduled time. See docs/decisions/0033-standing-orders.md.
"""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.auth import PrincipalKind, Scope
from contracts.common import Page
from contracts.standing_orders import (
    NOT_SCHEDULED_REASON,
    OccurrenceOutcome,
    OccurrenceRequest,
    StandingOrder,
    StandingOrderCreate,
    StandingOrderOccurrence,
    StandingOrderStatus,
    occurrence_idempotency_key,
    schedule_id,
)
from contracts.transfers import TransactionsProblem, TransferCreate, TransferStatus
from kit.audit import Actor, change_event
from kit.auth import Principal
from kit.db import Database
from kit.errors import Forbidden, ProblemError
from kit.pagination import cut_page, decode_position, encode_position, fetch_limit
from kit.params import required_idempotency_key
from transactions import repository, service
from transactions import standing_order_repository as orders_repository
from transactions.accounts_client import SourceAccounts
from transactions.audit import RECONCILER_ACTOR
from transactions.changes import ChangeListener
from transactions.errors import SameAccount, WorkflowServiceUnavailable
from transactions.models import StandingOrderOccurrenceRow, StandingOrderRow
from transactions.service import IdempotencyPolicy, Requester, TransferCreation
from transactions.standing_order_schedules import (
    IntervalInvalid,
    ScheduleView,
    StandingOrderSchedules,
    parse_interval,
)
from transactions.workflow_client import TransferWorkflows

log = structlog.get_logger()


class IntervalNotValid(ProblemError):
    """The interval is not an ISO 8601 duration a standing order can run on: whole months that
    divide a year (P1M, P3M, P1Y) or a fixed length (P7D, PT12H), not a mix."""

    status = 422
    slug = TransactionsProblem.standing_order_interval_invalid
    title = "The interval is not one a standing order can run on"


class IntervalTooShort(ProblemError):
    """The interval is shorter than the shortest the bank runs a standing order on (the detail says
    it, in seconds): ask for a longer one."""

    status = 422
    slug = TransactionsProblem.standing_order_interval_too_short
    title = "The interval is shorter than the shortest allowed"


class ScheduleNotValid(ProblemError):
    """The order's `end_at` is not after its `start_at`, or both `end_at` and `count` were given:
    give at most one of them, ending after the start."""

    status = 422
    slug = TransactionsProblem.standing_order_schedule_invalid
    title = "The order's start, end or count do not make a schedule"


class StandingOrderNotFound(ProblemError):
    """No standing order you may see has this id (another customer's is answered alike), or it has
    no occurrence at the time asked."""

    status = 404
    slug = TransactionsProblem.standing_order_not_found
    title = "Standing order not found"


class StandingOrderCancelled(ProblemError):
    """The standing order is cancelled: it cannot be paused, resumed or run again; create a new
    one."""

    status = 409
    slug = TransactionsProblem.standing_order_cancelled
    title = "The standing order is cancelled"


# Refusals of an occurrence's transfer that no retry changes (the source account gone or
# no longer the owner's: 404; terms refused: 422): recorded as the occurrence's failure.
# Anything else (503 accounts or Temporal away, 409 a key in flight, 403 a misconfigured
# token) is transient: the occurrence workflow asks again.
FINAL_REFUSAL_STATUSES: Final = frozenset({404, 422})


@dataclass(frozen=True)
class StandingOrderRules:
    """What the service allows: the shortest interval."""

    min_interval: timedelta

    def __post_init__(self) -> None:
        assert self.min_interval > timedelta(0)


def _check_terms(order: StandingOrderCreate, rules: StandingOrderRules) -> None:
    """Refuse an order that could never run as asked, before anything is claimed."""
    if order.source_account_id == order.target_account_id:
        raise SameAccount("a standing order needs two different accounts")
    try:
        interval = parse_interval(order.interval)
    except IntervalInvalid as error:
        raise IntervalNotValid(str(error)) from None
    if interval.shortest < rules.min_interval:
        raise IntervalTooShort(
            f"the shortest interval allowed is {int(rules.min_interval.total_seconds())} seconds"
        )
    if order.end_at is not None and order.count is not None:
        raise ScheduleNotValid("give end_at or count, not both")
    if order.end_at is not None and order.end_at <= order.start_at:
        raise ScheduleNotValid("end_at comes after start_at")


def _to_contract(row: StandingOrderRow, view: ScheduleView | None, known: bool) -> StandingOrder:
    return StandingOrder(
        id=row.id,
        schedule_id=schedule_id(row.id),
        status=StandingOrderStatus(row.status),
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        interval=row.interval,
        start_at=row.start_at,
        end_at=row.end_at,
        count=row.count,
        next_run_at=[] if view is None or row.status != "active" else view.next_run_at,
        next_run_at_known=known,
        cancellation_reason=row.cancellation_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def create_standing_order(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    accounts: SourceAccounts,
    *,
    rules: StandingOrderRules,
    requester: Requester,
    idempotency_key: str | None,
    order: StandingOrderCreate,
) -> TransferCreation:
    """Create an order and its schedule, at most once per (caller, idempotency key).

    The row is committed before the schedule is created; a retry after a failure between
    the two finishes the same order (or, past the start deadline, answers it cancelled),
    and so does the reconciler if nobody retries."""
    principal = requester.principal
    caller = service.caller_key(principal)
    key = required_idempotency_key(idempotency_key)
    _check_terms(order, rules)
    customer_id = principal.customer_id
    if customer_id is None:
        # An order pays out of a customer's account as that customer, again and again.
        raise Forbidden("only customers (the source account's owner) create standing orders")
    hash_of_request = service.request_hash(order)
    # The transfers' own claim (same table, same caller space, same waits): an order is
    # created exactly as a transfer is, the claim's id becoming the order's.
    outcome = await service.claim_or_wait(
        database, changes, policy, caller=caller, key=key, hash_of_request=hash_of_request
    )
    if isinstance(outcome, TransferCreation):
        return outcome
    order_id = outcome
    structlog.contextvars.bind_contextvars(standing_order_id=str(order_id))
    try:
        await accounts.check_owned(
            account_id=order.source_account_id,
            authorization=requester.authorization or "",
            principal=principal,
        )
    except BaseException:
        await service.abandon_claim(database, caller=caller, key=key, transfer_id=order_id)
        raise
    try:
        async with database.sessions() as session, session.begin():
            created = await orders_repository.insert_order(
                session, standing_order_id=order_id, customer_id=customer_id, order=order
            )
            if created:
                row = await orders_repository.get_order(session, order_id)
                assert row is not None, "inserted above"
                after = order.model_dump(mode="json", exclude_none=True)
                event = _order_event(
                    requester.actor, row, action="standing_order.created", before=None, after=after
                )
                await repository.append_audit(session, event)
        await settle_schedule(
            database, workflows, schedules, standing_order_id=order_id, actor=requester.actor
        )
        body = await _complete_claim(
            database, workflows, schedules, caller=caller, key=key, order_id=order_id
        )
    except BaseException:
        await service.release_claim(database, caller=caller, key=key, transfer_id=order_id)
        raise
    log.info("standing_order.created" if created else "standing_order.create_resumed")
    # The claim's answer type (a replay is one): here its id is the order's.
    return TransferCreation(transfer_id=order_id, status_code=201, body=body, replayed=False)


async def _complete_claim(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    caller: str,
    key: str,
    order_id: uuid.UUID,
) -> dict[str, Any]:
    """Store the answer (201, the order as it stands) under the key. A retry that took over
    our expired lease and finished first stored the same order (the claim's id)."""
    async with database.sessions() as session:
        row = await orders_repository.get_order(session, order_id)
    assert row is not None, "committed before the schedule"
    view = None
    if row.status != StandingOrderStatus.cancelled:
        view = await schedules.describe(await workflows.connected(), order_id)
    async with database.sessions() as session, session.begin():
        body = _to_contract(row, view, known=True).model_dump(mode="json")
        await repository.complete_idempotency_key(
            session,
            caller=caller,
            key=key,
            transfer_id=order_id,
            response_status=201,
            response_body=body,
        )
    return body


async def _load_visible(
    session: AsyncSession, standing_order_id: uuid.UUID, viewer: Principal
) -> StandingOrderRow:
    """The order if `viewer` may see it; a foreign one answers exactly as a missing one."""
    row = await orders_repository.get_order(session, standing_order_id)
    if row is None or (viewer.customer_id is not None and row.customer_id != viewer.customer_id):
        raise StandingOrderNotFound(f"no standing order {standing_order_id}")
    return row


async def _view(
    workflows: TransferWorkflows, schedules: StandingOrderSchedules, row: StandingOrderRow
) -> tuple[ScheduleView | None, bool]:
    """The schedule's view, and whether Temporal answered (a read still answers without)."""
    if row.status == StandingOrderStatus.cancelled:
        return None, True
    try:
        client = await workflows.connected()
        return await schedules.describe(client, row.id), True
    except ProblemError:
        return None, False


async def get_standing_order(
    session: AsyncSession,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    standing_order_id: uuid.UUID,
    viewer: Principal,
) -> StandingOrder:
    row = await _load_visible(session, standing_order_id, viewer)
    view, known = await _view(workflows, schedules, row)
    return _to_contract(row, view, known)


async def list_standing_orders(
    session: AsyncSession,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    viewer: Principal,
    limit: int,
    cursor: str | None,
) -> Page[StandingOrder]:
    """One page of the orders `viewer` may see (a customer: their own), newest first."""
    rows = await orders_repository.list_orders(
        session,
        customer_id=viewer.customer_id,
        after=None if cursor is None else decode_position(cursor),
        limit=fetch_limit(limit),
    )
    page_rows, next_cursor = cut_page(
        rows, limit=limit, cursor_of=lambda row: encode_position(row.created_at, row.id)
    )
    # One describe per order, at once: a page costs one Temporal round trip, not fifty.
    views = await asyncio.gather(*(_view(workflows, schedules, row) for row in page_rows))
    items = [
        _to_contract(row, view, known) for row, (view, known) in zip(page_rows, views, strict=True)
    ]
    return Page[StandingOrder](items=items, next_cursor=next_cursor)


async def set_paused(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    standing_order_id: uuid.UUID,
    paused: bool,
    requester: Requester,
) -> StandingOrder:
    """Pause (or resume) the order's schedule, then record it; idempotent. 409 once cancelled."""
    viewer = requester.principal
    async with database.sessions() as session:
        row = await _load_visible(session, standing_order_id, viewer)
    if row.status == StandingOrderStatus.cancelled:
        raise StandingOrderCancelled(f"standing order {standing_order_id} is cancelled")
    client = await workflows.connected()
    await schedules.pause(client, standing_order_id, paused=paused)
    status = StandingOrderStatus.paused if paused else StandingOrderStatus.active
    action = "standing_order.paused" if paused else "standing_order.resumed"
    await _record_status(database, row, status=status, action=action, requester=requester)
    log.info(action)
    async with database.sessions() as session:
        return await get_standing_order(
            session, workflows, schedules, standing_order_id=standing_order_id, viewer=viewer
        )


async def cancel_standing_order(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    standing_order_id: uuid.UUID,
    requester: Requester,
) -> StandingOrder:
    """Delete the order's schedule, then mark it cancelled; cancelling again changes nothing."""
    viewer = requester.principal
    async with database.sessions() as session:
        row = await _load_visible(session, standing_order_id, viewer)
    client = await workflows.connected()
    await schedules.delete(client, standing_order_id)
    await _record_status(
        database,
        row,
        status=StandingOrderStatus.cancelled,
        action="standing_order.cancelled",
        requester=requester,
    )
    if row.schedule_created_at is None:
        # A reconciler (or late retry) holding the order's lock may have created the
        # schedule after our delete; none can once the order is cancelled, so delete again.
        await schedules.delete(client, standing_order_id)
    log.info("standing_order.cancelled")
    async with database.sessions() as session:
        return await get_standing_order(
            session, workflows, schedules, standing_order_id=standing_order_id, viewer=viewer
        )


def _order_event(
    actor: Actor,
    row: StandingOrderRow,
    *,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> AuditEventCreate:
    return change_event(
        actor,
        action=action,
        subject_type="standing_order",
        subject_id=row.id,
        now=datetime.now(UTC),
        before=before,
        after=after,
        account_ids=[str(row.source_account_id), str(row.target_account_id)],
    )


async def _record_status(
    database: Database,
    row: StandingOrderRow,
    *,
    status: StandingOrderStatus,
    action: str,
    requester: Requester,
) -> None:
    """Move the order's status, audited in the same transaction; a repeat writes nothing."""
    async with database.sessions() as session, session.begin():
        before = await orders_repository.set_status(
            session, standing_order_id=row.id, status=status
        )
        if before is not None:
            event = _order_event(
                requester.actor,
                row,
                action=action,
                before={"status": before},
                after={"status": status.value},
            )
            await repository.append_audit(session, event)


def _terms_of(row: StandingOrderRow) -> StandingOrderCreate:
    return StandingOrderCreate(
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        interval=row.interval,
        start_at=row.start_at,
        end_at=row.end_at,
        count=row.count,
    )


async def settle_schedule(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    standing_order_id: uuid.UUID,
    actor: Actor,
) -> bool:
    """Create the order's schedule if it is not known to exist; past the start deadline,
    end the order cancelled (`not-scheduled`) unless its schedule exists. Whether this call
    settled it (False: settled already, or cancelled). 503 while Temporal is away."""
    # The order's row lock is held across the Temporal calls (each bounded by the RPC
    # timeout): a late retry and the reconciler take turns, so the one that finds the
    # deadline passed cannot cancel an order whose schedule the other is creating. gRPC
    # sends the deadline along, so a create that timed out is not applied later.
    async with database.sessions() as session, session.begin():
        row = await orders_repository.lock_order(session, standing_order_id)
        assert row is not None, "committed before its schedule"
        if row.schedule_created_at is not None or row.status == StandingOrderStatus.cancelled:
            return False
        client = await workflows.connected()
        if datetime.now(UTC) <= workflows.start_deadline_of(row.created_at):
            await schedules.create(
                client, standing_order_id=row.id, order=_terms_of(row), customer_id=row.customer_id
            )
        elif await schedules.describe(client, row.id) is None:
            await orders_repository.cancel_unscheduled(
                session, standing_order_id=row.id, reason=NOT_SCHEDULED_REASON
            )
            after = {"status": "cancelled", "cancellation_reason": NOT_SCHEDULED_REASON}
            event = _order_event(
                actor,
                row,
                action="standing_order.cancelled",
                before={"status": row.status},
                after=after,
            )
            await repository.append_audit(session, event)
            log.warning("standing_order.not_scheduled", created_at=row.created_at.isoformat())
            return True
        # Created now, or (past the deadline) created by an attempt that died unrecorded.
        await orders_repository.mark_schedule_created(session, standing_order_id=row.id)
    log.info("standing_order.schedule_created")
    return True


async def reconcile_unscheduled_orders(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    after: timedelta,
    batch_size: int,
) -> int:
    """Settle up to `batch_size` orders recorded more than `after` ago whose schedule is not
    known to exist; how many it settled. Stops at the first Temporal failure."""
    assert batch_size > 0
    async with database.sessions() as session:
        order_ids = await orders_repository.unscheduled_orders(
            session, created_before=datetime.now(UTC) - after, limit=batch_size
        )
    settled = 0
    for order_id in order_ids:
        with structlog.contextvars.bound_contextvars(standing_order_id=str(order_id)):
            try:
                if await settle_schedule(
                    database,
                    workflows,
                    schedules,
                    standing_order_id=order_id,
                    actor=RECONCILER_ACTOR,
                ):
                    settled += 1
            except WorkflowServiceUnavailable:
                log.warning("reconciler.temporal_unavailable", waiting=len(order_ids) - settled)
                return settled
    return settled


def _occurrence(
    row: StandingOrderOccurrenceRow, status: str | None, failure_reason: str | None
) -> StandingOrderOccurrence:
    return StandingOrderOccurrence(
        standing_order_id=row.standing_order_id,
        scheduled_at=row.scheduled_at,
        transfer_id=row.transfer_id,
        status=None if status is None else TransferStatus(status),
        failure_reason=row.failure_reason or failure_reason,
        failed_at=row.failed_at,
        created_at=row.created_at,
    )


async def list_occurrences(
    session: AsyncSession,
    *,
    standing_order_id: uuid.UUID,
    viewer: Principal,
    after: datetime | None,
    limit: int,
) -> list[StandingOrderOccurrence]:
    """The order's occurrences, oldest first, each with its transfer's status now."""
    await _load_visible(session, standing_order_id, viewer)
    rows = await orders_repository.list_occurrences(
        session, standing_order_id=standing_order_id, after=after, limit=limit
    )
    return [_occurrence(row, status, reason) for row, status, reason in rows]


def _acting_for(customer_id: str) -> Principal:
    """The order's owner, as whom its occurrences' transfers are created: the transfers
    are theirs (listed, notified, owned) and their ownership of the source is checked."""
    return Principal(
        subject=customer_id,
        kind=PrincipalKind.customer,
        scopes=frozenset({Scope.transfers_write.value, Scope.accounts_read.value}),
    )


def _occurrence_transfer(row: StandingOrderRow, scheduled_at: datetime) -> TransferCreate:
    return TransferCreate(
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        metadata={"standing_order_id": str(row.id), "scheduled_at": scheduled_at.isoformat()},
    )


async def create_occurrence(
    database: Database,
    workflows: TransferWorkflows,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    accounts: SourceAccounts,
    *,
    standing_order_id: uuid.UUID,
    request: OccurrenceRequest,
    requester: Requester,
) -> StandingOrderOccurrence:
    """Create the transfer of one scheduled time through the transfers' own path, once:
    a second call for the same time answers the first occurrence. 409 once cancelled."""
    structlog.contextvars.bind_contextvars(standing_order_id=str(standing_order_id))
    scheduled_at = request.scheduled_at
    async with database.sessions() as session:
        row = await orders_repository.get_order(session, standing_order_id)
        if row is None:
            raise StandingOrderNotFound(f"no standing order {standing_order_id}")
        existing = await _load_occurrence(session, standing_order_id, scheduled_at)
    if existing is not None:
        return existing
    if row.status == StandingOrderStatus.cancelled:
        raise StandingOrderCancelled(f"standing order {standing_order_id} is cancelled")
    try:
        creation = await service.create_transfer(
            database,
            workflows,
            changes,
            policy,
            accounts,
            requester=Requester(
                principal=_acting_for(row.customer_id),
                request_id=requester.request_id,
                authorization=requester.authorization,
            ),
            idempotency_key=occurrence_idempotency_key(standing_order_id, scheduled_at),
            transfer=_occurrence_transfer(row, scheduled_at),
        )
    except ProblemError as error:
        if error.status not in FINAL_REFUSAL_STATUSES:
            raise
        return await _record_refusal(
            database, standing_order_id, scheduled_at, failure_reason=str(error.slug)
        )
    async with database.sessions() as session, session.begin():
        await orders_repository.insert_occurrence(
            session,
            standing_order_id=standing_order_id,
            scheduled_at=scheduled_at,
            transfer_id=creation.transfer_id,
        )
    log.info("standing_order.occurrence_created", transfer_id=str(creation.transfer_id))
    async with database.sessions() as session:
        occurrence = await _load_occurrence(session, standing_order_id, scheduled_at)
    assert occurrence is not None, "committed above"
    return occurrence


async def _record_refusal(
    database: Database, standing_order_id: uuid.UUID, scheduled_at: datetime, *, failure_reason: str
) -> StandingOrderOccurrence:
    """Record the scheduled time as failed without a transfer (once); the occurrence."""
    async with database.sessions() as session, session.begin():
        recorded = await orders_repository.insert_refused_occurrence(
            session,
            standing_order_id=standing_order_id,
            scheduled_at=scheduled_at,
            failure_reason=failure_reason,
        )
    if recorded:
        log.warning("standing_order.occurrence_refused", failure_reason=failure_reason)
    async with database.sessions() as session:
        occurrence = await _load_occurrence(session, standing_order_id, scheduled_at)
    assert occurrence is not None, "committed above"
    return occurrence


async def _load_occurrence(
    session: AsyncSession, standing_order_id: uuid.UUID, scheduled_at: datetime
) -> StandingOrderOccurrence | None:
    row = await orders_repository.get_occurrence(
        session, standing_order_id=standing_order_id, scheduled_at=scheduled_at
    )
    if row is None:
        return None
    if row.transfer_id is None:
        return _occurrence(row, None, None)
    transfer = await repository.get_transfer(session, row.transfer_id)
    assert transfer is not None, "an occurrence's transfer exists (foreign key)"
    return _occurrence(row, transfer.status, transfer.failure_reason)


async def record_outcome(
    session: AsyncSession, *, standing_order_id: uuid.UUID, outcome: OccurrenceOutcome
) -> StandingOrderOccurrence:
    """Record how an occurrence's transfer ended; a failure is marked once."""
    if outcome.status is not TransferStatus.completed:
        await orders_repository.mark_occurrence_failed(
            session,
            standing_order_id=standing_order_id,
            scheduled_at=outcome.scheduled_at,
            failure_reason=outcome.failure_reason or outcome.status.value,
        )
    occurrence = await _load_occurrence(session, standing_order_id, outcome.scheduled_at)
    if occurrence is None:
        raise StandingOrderNotFound(f"no occurrence of {standing_order_id} at that time")
    return occurrence
