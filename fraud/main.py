"""The fraud service application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from fraud.api import admin_router, internal_router, operator_router
from fraud.config import Settings
from fraud.db import autocommit_sessions
from fraud.models import audit_events
from fraud.resources import FraudResources
from fraud.ruleset import DEFAULT_RULESET_PATH, Ruleset, RulesetError, load_ruleset
from kit.app import Lifespan, create_service_app
from kit.audit import audit_router
from kit.auth import TokenVerifier
from kit.db import database_of
from kit.resources import Clock, install_resources, utc_now

MIGRATIONS_PATH = Path(__file__).parent / "migrations"

log = structlog.get_logger()


def _lifespan(ruleset: Ruleset, shadow_ruleset: Ruleset | None, clock: Clock) -> Lifespan:
    """Installs the service's resources once the shell has opened the database."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sessions = autocommit_sessions(database_of(app))
        install_resources(
            app,
            FraudResources(
                clock=clock,
                ruleset=ruleset,
                shadow_ruleset=shadow_ruleset,
                autocommit_sessions=sessions,
            ),
        )
        yield

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """Build the service; a ruleset (live or shadow) that does not load raises
    `RulesetError` right here. Tokens verify with `token_verifier` (tests) or else against
    the issuer's JWKS at `settings.auth_jwks_url`; tests pass a `clock` they move."""
    settings = settings or Settings()  # read from the environment
    ruleset_path = settings.ruleset_path or DEFAULT_RULESET_PATH
    ruleset = load_ruleset(ruleset_path)
    shadow_ruleset = (
        None if settings.shadow_ruleset_path is None else load_ruleset(settings.shadow_ruleset_path)
    )
    if shadow_ruleset is not None and shadow_ruleset.version == ruleset.version:
        # Verdicts are recorded per version: a shadow under the live version's name would
        # be indistinguishable from it.
        raise RulesetError(
            f"shadow ruleset {settings.shadow_ruleset_path} has the live version "
            f"{ruleset.version!r}; give it a version of its own"
        )
    app = create_service_app(
        service="fraud",
        title="Sagabank fraud",
        description="Explainable risk scores, from a versioned ruleset, that gate every transfer.",
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[
            internal_router,
            operator_router,
            admin_router,
            audit_router(service="fraud", table=audit_events),
        ],
        lifespan=_lifespan(ruleset, shadow_ruleset, clock),
        token_verifier=token_verifier,
    )
    log.info("fraud.ruleset_loaded", ruleset_version=ruleset.version, path=str(ruleset_path))
    if shadow_ruleset is not None:
        log.info(
            "fraud.shadow_ruleset_loaded",
            ruleset_version=shadow_ruleset.version,
            path=str(settings.shadow_ruleset_path),
        )
    return app
