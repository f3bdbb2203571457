"""The background task that voids holds past their deadline, in bounded batches."""

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Final

import structlog

from accounts import service

log = structlog.get_logger()

# Batches per wake-up: a backlog drains at batch_size x this per interval, and the loop
# still yields to the service's requests between wake-ups.
SWEEP_ROUNDS_MAX: Final = 20


async def sweep_once(
    database: service.Ledger, *, clock: Callable[[], datetime], batch_size: int
) -> int:
    """Void expired holds until fewer than a batch remain or the rounds run out."""
    voided_total = 0
    for _ in range(SWEEP_ROUNDS_MAX):
        voided = await service.sweep_expired_holds(database, now=clock(), batch_size=batch_size)
        voided_total += voided
        if voided < batch_size:
            break
    return voided_total


async def run_sweeper(
    database: service.Ledger,
    *,
    clock: Callable[[], datetime],
    interval_seconds: float,
    batch_size: int,
) -> None:
    """Sweep every `interval_seconds` until cancelled. A failed round is logged and the
    next one tries again: expired holds already count for nothing in the balances, so a
    late sweep delays only the journal's record of their release."""
    assert interval_seconds > 0, "a sweeper that never sleeps would starve the service"
    while True:
        try:
            await sweep_once(database, clock=clock, batch_size=batch_size)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ledger.sweep_failed")
        await asyncio.sleep(interval_seconds)
