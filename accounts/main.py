"""The accounts service application."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from accounts import repository
from accounts.api import router
from accounts.config import Settings
from accounts.service import Ledger
from accounts.sweeper import run_sweeper
from kit.app import create_service_app

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
# Same bound as the kit's engine: a query that hangs must not hold row locks forever.
_COMMAND_TIMEOUT_SECONDS: Final = 30.0
_POOL_CLOSE_TIMEOUT_SECONDS: Final = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """`clock` decides when holds expire; tests pass one they can move."""
    settings = settings or Settings()  # read from the environment

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await repository.create_pool(
            settings.async_database_url(),
            # As many connections as the kit's engine may open (its pool plus as much
            # overflow): the write path serves most of this service's requests.
            size=2 * settings.database_pool_size,
            application_name="accounts",
            command_timeout_seconds=_COMMAND_TIMEOUT_SECONDS,
        )
        database = Ledger(pool)
        app.state.ledger = database
        sweeper = None
        if settings.hold_sweep_enabled:
            sweeper = asyncio.create_task(
                run_sweeper(
                    database,
                    clock=lambda: app.state.clock(),
                    interval_seconds=settings.hold_sweep_interval_seconds,
                    batch_size=settings.hold_sweep_batch_size,
                ),
                name="accounts.hold_sweeper",
            )
        # Everything built so far (routes, schemas, validators) lives as long as the
        # process: keep the garbage collector from scanning it again on every full pass,
        # which a batch of a thousand transfers would otherwise trigger.
        gc.freeze()
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            try:
                await asyncio.wait_for(pool.close(), _POOL_CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                pool.terminate()

    app = create_service_app(
        service="accounts",
        title="Sagabank accounts",
        description=(
            "Bank accounts and the two-phase, double-entry ledger: validation, holds, "
            "postings, balances and statements."
        ),
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[router],
        lifespan=lifespan,
    )
    app.state.clock = clock
    return app
