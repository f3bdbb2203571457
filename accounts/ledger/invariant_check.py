"""The background job that checks the ledger's invariants and reports the result as
metrics (sagabank_ledger_invariants_hold, sagabank_ledger_invariant_check_timestamp_seconds)."""

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Final

from accounts.ledger import metrics, service
from contracts.accounts import LedgerInvariants
from kit.db import Database
from kit.jobs import ExclusiveJob

# The job's name, and so its advisory lock in the accounts database.
INVARIANT_CHECK_JOB: Final = "accounts.invariant_check"


async def check_once(database: Database, *, clock: Callable[[], datetime]) -> LedgerInvariants:
    """Run the check `sagabank ledger check` asks for (a failure logs
    `ledger.invariants_broken` with what failed) and set the gauges from its result."""
    async with database.sessions() as session, session.begin():
        invariants = await service.check_invariants(session, now=clock())
    metrics.LEDGER_INVARIANTS_HOLD.set(1 if invariants.ok else 0)
    metrics.LEDGER_INVARIANT_CHECK_TIMESTAMP.set(clock().timestamp())
    return invariants


def invariant_check_job(
    database: Database, *, dsn: str, clock: Callable[[], datetime], interval_seconds: float
) -> ExclusiveJob:
    """Check every `interval_seconds` in one replica at a time. A check that cannot run
    (the database away) is logged by the job and moves no gauge: the stale timestamp is
    what SagabankLedgerInvariantCheckStale alerts on."""
    # Under an advisory lock, like the hold sweeper: the check reads every account and
    # journal entry, and one replica doing it is enough. Two at once are harmless (reads).
    return ExclusiveJob(
        name=INVARIANT_CHECK_JOB,
        dsn=dsn,
        interval_seconds=interval_seconds,
        run_once=partial(check_once, database, clock=clock),
    )
