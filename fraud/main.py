"""The fraud service application."""

from pathlib import Path

import structlog
from fastapi import FastAPI

from fraud import service
from fraud.api import router
from fraud.config import Settings
from fraud.ruleset import DEFAULT_RULESET_PATH, load_ruleset
from kit.app import create_service_app

MIGRATIONS_PATH = Path(__file__).parent / "migrations"

log = structlog.get_logger()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; a ruleset that does not load raises `RulesetError` right here."""
    settings = settings or Settings()  # read from the environment
    ruleset_path = settings.ruleset_path or DEFAULT_RULESET_PATH
    ruleset = load_ruleset(ruleset_path)
    app = create_service_app(
        service="fraud",
        title="Sagabank fraud",
        description="Explainable risk scores, from a versioned ruleset, that gate every transfer.",
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[router],
    )
    app.state.ruleset = ruleset
    app.state.clock = service.utc_now
    log.info("fraud.ruleset_loaded", ruleset_version=ruleset.version, path=str(ruleset_path))
    return app
