"""The reconciler: starts the saga of a transfer whose start failed and was never retried,
and settles a standing order whose schedule was never created (decision 0033).

A transfer is committed before its saga starts (the saga's first report must find it). If
Temporal is away at that moment, the customer gets a 503 and may never retry, and the
transfer would wait forever with nothing to end it. The reconciler looks for transfers
whose saga is not known to run and starts it, with the same workflow id and the same input,
so a start that did happen (a process that died before recording it) changes nothing.

It never ends a transfer itself: one that is past its start deadline is started all the
same, and its saga ends it `rejected` (`not-started`) without moving money. Temporal's
workflow id thus stays the one arbiter of whether a saga runs, and a customer's late retry
racing the reconciler cannot start a second one, nor one for a transfer marked ended.
"""

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final

import structlog

from contracts.transfers import TransferCreate
from kit.db import Database
from kit.jobs import ExclusiveJob
from transactions import audit, repository
from transactions.errors import WorkflowServiceUnavailable
from transactions.models import TransferRow
from transactions.standing_order_schedules import StandingOrderSchedules
from transactions.standing_orders import reconcile_unscheduled_orders
from transactions.workflow_client import TransferWorkflows

log = structlog.get_logger()

# The job's name, and so its advisory lock in the transactions database.
RECONCILER_JOB: Final = "transactions.saga_reconciler"
# Transfers looked at per round; a backlog drains at this many per interval.
RECONCILE_BATCH_SIZE: Final = 100


def reconciler_job(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    dsn: str,
    interval_seconds: float,
    after_seconds: float,
) -> ExclusiveJob:
    """Reconcile every `interval_seconds` in one replica at a time."""
    # Under an advisory lock, not a Temporal Schedule: the job exists for the times Temporal
    # was away, and its work list is in this service's database. Two rounds at once (the
    # overlap a lock cannot rule out) start the same sagas twice: the second start is a no-op.
    return ExclusiveJob(
        name=RECONCILER_JOB,
        dsn=dsn,
        interval_seconds=interval_seconds,
        run_once=partial(
            _reconcile_round,
            database,
            workflows,
            schedules,
            after=timedelta(seconds=after_seconds),
        ),
    )


async def _reconcile_round(
    database: Database,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
    *,
    after: timedelta,
) -> int:
    """One round: the transfers whose saga never started, then the standing orders whose
    schedule was never created (decision 0033); how many of both it settled."""
    transfers = await reconcile_unstarted_transfers(
        database, workflows, after=after, batch_size=RECONCILE_BATCH_SIZE
    )
    orders = await reconcile_unscheduled_orders(
        database, workflows, schedules, after=after, batch_size=RECONCILE_BATCH_SIZE
    )
    return transfers + orders


def _creation_of(row: TransferRow) -> TransferCreate:
    return TransferCreate(
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        metadata=row.metadata_,
        execute_at=row.execute_at,
    )


async def _start_saga(workflows: TransferWorkflows, row: TransferRow) -> None:
    """Start the row's saga as its request would have: a reversal's, or a transfer's."""
    if row.reversal_of is not None:
        await workflows.start_reversal(
            reversal_id=row.id,
            original_transfer_id=row.reversal_of,
            transfer=_creation_of(row),
            reason=row.reversal_reason,
            source_customer_id=row.customer_id,
            requested_at=row.created_at,
        )
        return
    await workflows.start(
        transfer_id=row.id,
        transfer=_creation_of(row),
        source_customer_id=row.customer_id,
        requested_at=row.created_at,
    )


async def reconcile_unstarted_transfers(
    database: Database, workflows: TransferWorkflows, *, after: timedelta, batch_size: int
) -> int:
    """Start the sagas of up to `batch_size` transfers recorded more than `after` ago whose
    saga is not known to run; how many it confirmed. Stops at the first Temporal failure
    (the next round tries again)."""
    assert batch_size > 0
    async with database.sessions() as session:
        rows = await repository.unstarted_transfers(
            session, created_before=datetime.now(UTC) - after, limit=batch_size
        )
    confirmed = 0
    for row in rows:
        with structlog.contextvars.bound_contextvars(transfer_id=str(row.id)):
            try:
                await _start_saga(workflows, row)
            except WorkflowServiceUnavailable:
                log.warning("reconciler.temporal_unavailable", waiting=len(rows) - confirmed)
                return confirmed
            async with database.sessions() as session, session.begin():
                marked = await repository.mark_saga_started(session, transfer_id=row.id)
                if marked:
                    await repository.append_audit(
                        session,
                        audit.saga_reconciled(
                            transfer_id=row.id,
                            source_account_id=row.source_account_id,
                            target_account_id=row.target_account_id,
                            requested_at=row.created_at,
                            start_deadline=workflows.start_deadline_of(row.created_at),
                        ),
                    )
            if marked:
                log.warning("reconciler.saga_started", requested_at=row.created_at.isoformat())
        confirmed += 1
    return confirmed
