"""The background job that voids holds past their deadline, in bounded batches."""

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Final

from accounts.ledger import service
from kit.jobs import ExclusiveJob

# The job's name, and so its advisory lock in the accounts database.
HOLD_SWEEPER_JOB: Final = "accounts.hold_sweeper"

# Batches per wake-up: a backlog drains at batch_size x this per interval, and the loop
# still yields to the service's requests between wake-ups.
SWEEP_ROUNDS_MAX: Final = 20


async def sweep_once(
    database: service.Ledger, *, clock: Callable[[], datetime], batch_size: int
) -> int:
    """Void expired holds until fewer than a batch remain or the rounds run out, then
    report the holds still open (metrics)."""
    voided_total = 0
    for _ in range(SWEEP_ROUNDS_MAX):
        voided = await service.sweep_expired_holds(database, now=clock(), batch_size=batch_size)
        voided_total += voided
        if voided < batch_size:
            break
    await service.report_open_holds(database, now=clock())
    return voided_total


def hold_sweeper_job(
    database: service.Ledger,
    *,
    dsn: str,
    clock: Callable[[], datetime],
    interval_seconds: float,
    batch_size: int,
) -> ExclusiveJob:
    """Sweep every `interval_seconds` in one replica at a time. A failed round is logged
    and the next one tries again: expired holds already count for nothing in the balances,
    so a late sweep delays only the journal's record of their release."""
    # Under an advisory lock, not a Temporal Schedule: accounts depends on nobody, Temporal
    # included. Two sweeps at once (the overlap a lock cannot rule out) are harmless: each
    # hold is voided once, under its row lock (test_racing_sweeps_void_each_hold_once).
    return ExclusiveJob(
        name=HOLD_SWEEPER_JOB,
        dsn=dsn,
        interval_seconds=interval_seconds,
        run_once=partial(sweep_once, database, clock=clock, batch_size=batch_size),
    )
