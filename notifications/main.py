"""The notifications service application."""

from pathlib import Path

from fastapi import FastAPI

from kit.app import create_service_app
from notifications.api import router
from notifications.config import Settings

MIGRATIONS_PATH = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()  # read from the environment
    return create_service_app(
        service="notifications",
        title="Sagabank notifications",
        description="Accepts transfer events from the saga; fans them out to webhooks and email.",
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[router],
    )
