"""The accounts service application."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from accounts.api import router
from accounts.config import Settings
from kit.app import create_service_app

MIGRATIONS_PATH = Path(__file__).parent / "migrations"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """`clock` decides when holds expire; tests pass one they can move."""
    settings = settings or Settings()  # read from the environment
    app = create_service_app(
        service="accounts",
        title="Sagabank accounts",
        description=(
            "Bank accounts and the two-phase, double-entry ledger: validation, holds, "
            "postings and balances."
        ),
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[router],
    )
    app.state.clock = clock
    return app
