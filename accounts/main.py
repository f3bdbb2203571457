"""The accounts service application."""

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import structlog
from argon2 import PasswordHasher
from fastapi import APIRouter, FastAPI
from sqlalchemy.exc import InterfaceError, OperationalError

from accounts.config import Settings
from accounts.identity import service as identity_service
from accounts.identity.api import router as oauth_router
from accounts.identity.authorize_api import router as authorize_router
from accounts.identity.errors import StaffSecretsNotConfigured
from accounts.identity.hashing import PasswordHashing
from accounts.identity.keys import SigningKeys, load_signing_keys
from accounts.identity.metadata import router as metadata_router
from accounts.identity.revocation import router as revocation_router
from accounts.identity.staff import reseal_secrets as reseal_staff_secrets
from accounts.identity.throttle import LoginThrottle
from accounts.ledger.api import router
from accounts.ledger.invariant_check import invariant_check_job
from accounts.ledger.repository import create_pool
from accounts.ledger.service import Ledger
from accounts.ledger.sweeper import hold_sweeper_job
from accounts.models import AUDIT_EVENTS
from accounts.resources import AccountsResources
from kit.app import create_service_app
from kit.audit import audit_router
from kit.auth import TokenVerifier
from kit.db import Database, database_of
from kit.jobs import ExclusiveJob
from kit.metrics_http import watch_pool
from kit.ratelimit import rate_limit_storage
from kit.resealing import secrets_router
from kit.resources import Clock, install_resources, utc_now

log = structlog.get_logger()

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
# Same bound as the kit's engine: a query that hangs must not hold row locks forever.
_COMMAND_TIMEOUT_SECONDS: Final = 30.0
_POOL_CLOSE_TIMEOUT_SECONDS: Final = 10.0
_BOOTSTRAP_ATTEMPTS_MAX: Final = 15
_BOOTSTRAP_BACKOFF_SECONDS: Final = 2.0


async def _bootstrap(
    database: Database,
    token_issuer: identity_service.Issuer,
    *,
    settings: Settings,
    clock: Clock,
) -> None:
    """Clients and the key record, retried (bounded) while the database comes up: in
    compose or Kubernetes this service may start before PostgreSQL answers."""
    for attempt in range(1, _BOOTSTRAP_ATTEMPTS_MAX + 1):
        try:
            await identity_service.bootstrap(
                database.sessions, token_issuer, clients=settings.registered_clients(), now=clock
            )
            return
        except (OSError, OperationalError, InterfaceError) as error:
            if attempt == _BOOTSTRAP_ATTEMPTS_MAX:
                raise
            log.warning("issuer.bootstrap_retried", attempt=attempt, error=type(error).__name__)
            await asyncio.sleep(_BOOTSTRAP_BACKOFF_SECONDS)


def _start_sweeper(settings: Settings, ledger: Ledger, clock: Clock) -> ExclusiveJob | None:
    """The hold sweeper, started (None when the settings turn it off)."""
    if not settings.hold_sweep_enabled:
        return None
    sweeper = hold_sweeper_job(
        ledger,
        dsn=settings.asyncpg_dsn(),
        clock=clock,
        interval_seconds=settings.hold_sweep_interval_seconds,
        batch_size=settings.hold_sweep_batch_size,
    )
    sweeper.start()
    return sweeper


async def _ledger_pool(settings: Settings) -> tuple[Any, Callable[[], None]]:
    """The ledger's asyncpg pool, in the service's pool gauges (summed with the engine's);
    and the function that takes it out of them."""
    pool = await create_pool(
        settings.asyncpg_dsn(),
        # As many connections as the kit's engine may open (its pool plus as much
        # overflow): the write path serves most of this service's requests.
        size=2 * settings.database_pool_size,
        application_name="accounts",
        command_timeout_seconds=_COMMAND_TIMEOUT_SECONDS,
        audit_chain_key=settings.audit_chain_key_bytes(),
    )
    if not settings.metrics_enabled:
        return pool, lambda: None
    stop_watching = watch_pool(
        "accounts",
        in_use=lambda: pool.get_size() - pool.get_idle_size(),
        connections_max=pool.get_max_size(),
    )
    return pool, stop_watching


def _start_invariant_check(
    settings: Settings, database: Database, clock: Clock
) -> ExclusiveJob | None:
    """The periodic ledger invariant check, started (None when the settings turn it off)."""
    if not settings.invariant_check_enabled:
        return None
    checker = invariant_check_job(
        database,
        dsn=settings.asyncpg_dsn(),
        clock=clock,
        interval_seconds=settings.invariant_check_interval_seconds,
    )
    checker.start()
    return checker


def _token_issuer(
    settings: Settings, keys: SigningKeys, hasher: PasswordHasher
) -> identity_service.Issuer:
    return identity_service.Issuer(
        keys=keys,
        issuer=settings.issuer,
        access_token_lifetime_seconds=settings.access_token_lifetime_seconds,
        refresh_token_lifetime_seconds=settings.refresh_token_lifetime_seconds,
        authorization_code_lifetime_seconds=settings.authorization_code_lifetime_seconds,
        throttle=LoginThrottle(
            settings.login_failure_rate, rate_limit_storage(settings.rate_limit_storage_uri)
        ),
        hasher=hasher,
        hashing=PasswordHashing(
            hasher, memory_budget_mib=settings.password_hashing_memory_budget_mib
        ),
        password_grant_enabled=settings.password_grant_enabled,
    )


def _resources(
    settings: Settings, clock: Clock, ledger: Ledger, issuer: identity_service.Issuer
) -> AccountsResources:
    return AccountsResources(
        clock=clock, ledger=ledger, issuer=issuer, staff_key_ring=settings.staff_key_ring()
    )


def _routers(settings: Settings) -> list[APIRouter]:
    """The issuer's routes, the ledger's, the audit trail's and the re-sealing of staff
    secrets (`sagabank secrets rotate`)."""
    return [
        oauth_router,
        authorize_router,
        metadata_router,
        revocation_router,
        router,
        audit_router(service="accounts", table=AUDIT_EVENTS),
        secrets_router(
            reseal=partial(reseal_staff_secrets, settings.staff_key_ring()),
            audit_table=AUDIT_EVENTS,
            problems=(StaffSecretsNotConfigured,),
        ),
    ]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    token_verifier: TokenVerifier | None = None,
    password_hasher: PasswordHasher | None = None,
) -> FastAPI:
    """`clock` decides when holds expire and stamps tokens; tests pass one they can move.

    Passwords and client secrets hash with argon2-cffi's defaults (argon2id, t=3, 64 MiB,
    p=4) unless `password_hasher` says otherwise: only tests pass a cheaper one, in code,
    so no setting can lower the cost of a deployment.

    Bearer tokens verify against the service's own signing keys, unless `token_verifier`
    (a test's issuer) says otherwise. Raises `SigningKeysError` when the key directory
    gives no key to sign with: a service that cannot issue tokens must not start.
    """
    settings = settings or Settings()  # read from the environment
    keys = load_signing_keys(settings.signing_keys_dir, active=settings.signing_key_active)
    token_issuer = _token_issuer(settings, keys, password_hasher or PasswordHasher())
    verifier = token_verifier or TokenVerifier(
        keys.key_source(), issuer=settings.issuer, audience=settings.token_audience("accounts")
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _bootstrap(database_of(app), token_issuer, settings=settings, clock=clock)
        log.info("issuer.ready", kid=keys.active.kid, published=len(keys.by_name))
        pool, stop_watching_pool = await _ledger_pool(settings)
        ledger = Ledger(pool)
        install_resources(app, _resources(settings, clock, ledger, token_issuer))
        sweeper = _start_sweeper(settings, ledger, clock)
        checker = _start_invariant_check(settings, database_of(app), clock)
        # Handles for tests and operators; no route uses them.
        app.state.hold_sweeper = sweeper
        app.state.invariant_check = checker
        # Everything built so far (routes, schemas, validators) lives as long as the
        # process: keep the garbage collector from scanning it again on every full pass,
        # which a batch of a thousand transfers would otherwise trigger.
        gc.freeze()
        try:
            yield
        finally:
            for job in (sweeper, checker):
                if job is not None:
                    await job.stop()
            stop_watching_pool()
            try:
                await asyncio.wait_for(pool.close(), _POOL_CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                pool.terminate()
            token_issuer.hashing.close()

    app = create_service_app(
        service="accounts",
        title="Sagabank accounts",
        description=(
            "Bank accounts and the two-phase, double-entry ledger: validation, holds, "
            "postings, balances and statements; the OAuth2 token issuer and its JWKS."
        ),
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=_routers(settings),
        lifespan=lifespan,
        token_verifier=verifier,
    )
    return app
