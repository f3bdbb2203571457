"""The transactions service application."""

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Final

import httpx
import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from contracts.secrets import ResealBatch, ResealRequest
from kit.app import Lifespan, create_service_app
from kit.audit import audit_router
from kit.auth import TokenVerifier
from kit.db import Database, database_of
from kit.http import create_client
from kit.jobs import ExclusiveJob
from kit.payloads import data_converter
from kit.resealing import secrets_router
from kit.resources import install_resources
from kit.sealing import KeyRing
from kit.temporal_connection import temporal_connect_config
from transactions import repository, service
from transactions.accounts_client import SourceAccounts
from transactions.api import admin_router, callbacks_router, internal_router, router
from transactions.callback_secrets import CallbackSecretBox
from transactions.changes import ChangeListener
from transactions.config import Settings
from transactions.errors import CallbacksNotConfigured
from transactions.models import audit_events
from transactions.reconciler import reconciler_job
from transactions.resources import TransactionsResources
from transactions.reversal_api import reversals_router
from transactions.standing_order_schedules import StandingOrderSchedules
from transactions.standing_orders import StandingOrderRules
from transactions.standing_orders_api import (
    standing_orders_internal_router,
    standing_orders_router,
)
from transactions.workflow_client import TransferWorkflows

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
# One purge pass deletes at most 10 x 1,000 expired keys, each batch its own transaction.
PURGE_BATCH_SIZE: Final = 1000
PURGE_BATCHES_MAX: Final = 10
# The purge's name, and so its advisory lock in the transactions database.
IDEMPOTENCY_PURGE_JOB: Final = "transactions.idempotency_purge"

log = structlog.get_logger()


def idempotency_purge_job(database: Database, *, dsn: str, interval_seconds: float) -> ExclusiveJob:
    """Purge expired keys every `interval_seconds` in one replica at a time. A failed pass
    is logged and retried at the next interval; keys stay readable meanwhile."""
    # Under an advisory lock, not a Temporal Schedule: this is housekeeping of our own
    # database and must go on while Temporal is away. Two passes at once (the overlap a
    # lock cannot rule out) are harmless: SKIP LOCKED gives them different rows.
    return ExclusiveJob(
        name=IDEMPOTENCY_PURGE_JOB,
        dsn=dsn,
        interval_seconds=interval_seconds,
        # First pass after one interval: a starting (or restarting) instance adds no load.
        first_round_delay_seconds=interval_seconds,
        run_once=partial(
            service.purge_expired_idempotency_keys,
            database,
            batch_size=PURGE_BATCH_SIZE,
            batches_max=PURGE_BATCHES_MAX,
        ),
    )


def _start_jobs(
    app: FastAPI,
    settings: Settings,
    workflows: TransferWorkflows,
    schedules: StandingOrderSchedules,
) -> list[ExclusiveJob]:
    """The service's periodic jobs, started (each runs in one replica at a time)."""
    purge = idempotency_purge_job(
        database_of(app),
        dsn=settings.asyncpg_dsn(),
        interval_seconds=settings.idempotency_purge_interval_seconds,
    )
    reconciler = reconciler_job(
        database_of(app),
        workflows,
        schedules,
        dsn=settings.asyncpg_dsn(),
        interval_seconds=settings.reconcile_interval_seconds,
        after_seconds=settings.reconcile_after_seconds,
    )
    # Handles for tests and operators; no route uses them.
    app.state.idempotency_purge = purge
    app.state.saga_reconciler = reconciler
    for job in (purge, reconciler):
        job.start()
    return [purge, reconciler]


def _resources(
    settings: Settings, temporal_client: Client | None, accounts: SourceAccounts
) -> TransactionsResources:
    ring = settings.key_ring()
    return TransactionsResources(
        workflows=_transfer_workflows(settings, temporal_client),
        changes=ChangeListener(
            settings.asyncpg_dsn(), poll_interval_seconds=settings.wait_poll_interval_seconds
        ),
        idempotency_policy=service.IdempotencyPolicy(
            ttl=timedelta(seconds=settings.idempotency_key_ttl_seconds),
            in_flight_wait_seconds=settings.idempotency_in_flight_wait_seconds,
        ),
        callback_secret_box=None if ring is None else CallbackSecretBox(ring),
        accounts=accounts,
        standing_order_schedules=StandingOrderSchedules(
            task_queue=settings.task_queue,
            rpc_timeout_seconds=settings.temporal_rpc_timeout_seconds,
        ),
        standing_order_rules=StandingOrderRules(
            min_interval=timedelta(seconds=settings.standing_order_min_interval_seconds)
        ),
    )


def _lifespan(
    settings: Settings,
    *,
    temporal_client: Client | None,
    accounts_transport: httpx.AsyncBaseTransport | None,
) -> Lifespan:
    """The service's own resources (the accounts client, the change listener, the
    Temporal client), installed for the routes, and its periodic jobs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        accounts_client = (
            None
            if settings.accounts_url is None
            else create_client(
                settings.accounts_url,
                timeout_seconds=settings.accounts_timeout_seconds,
                transport=accounts_transport,
            )
        )
        installed = _resources(settings, temporal_client, SourceAccounts(accounts_client))
        install_resources(app, installed)
        await installed.changes.start()
        jobs = _start_jobs(app, settings, installed.workflows, installed.standing_order_schedules)
        try:
            yield
        finally:
            for job in reversed(jobs):
                await job.stop()
            await installed.changes.stop()
            if accounts_client is not None:
                await accounts_client.aclose()

    return lifespan


def _transfer_workflows(settings: Settings, client: Client | None) -> TransferWorkflows:
    return TransferWorkflows(
        client=client,
        data_converter=data_converter(settings.payload_key_ring()),
        # Built at start: settings that cannot connect stop the service here.
        connection=temporal_connect_config(
            address=settings.temporal_address, namespace=settings.temporal_namespace
        ),
        task_queue=settings.task_queue,
        review_timeout_seconds=settings.review_timeout_seconds,
        hold_timeout_seconds=settings.hold_timeout_seconds,
        start_deadline_seconds=settings.start_deadline_seconds,
        rpc_timeout_seconds=settings.temporal_rpc_timeout_seconds,
        cancel_timeout_seconds=settings.cancel_timeout_seconds,
        trace_url_template=settings.trace_url_template,
        execute_at_ahead_max_seconds=settings.execute_at_ahead_max_seconds,
    )


async def _reseal(
    ring: KeyRing | None, session: AsyncSession, request: ResealRequest
) -> ResealBatch:
    if ring is None:
        raise CallbacksNotConfigured("set TRANSACTIONS_SECRETS_KEYS to re-seal callback secrets")
    return await repository.reseal_callback_secrets(
        session, ring, after=request.after, limit=request.limit
    )


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    token_verifier: TokenVerifier | None = None,
    accounts_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The service; without `temporal_client` it connects to Temporal on first use.

    Tokens are verified by `token_verifier` if given (tests), else against the JWKS of
    `TRANSACTIONS_AUTH_JWKS_URL`. `accounts_transport` stands in for the accounts service
    in tests.
    """
    settings = settings or Settings()  # read from the environment

    app = create_service_app(
        service="transactions",
        title="Sagabank transactions",
        description=(
            "The front door for transfers: accepts them idempotently, starts their saga, "
            "keeps their status projection, and forwards cancellations, reviews and signed "
            "confirmation callbacks."
        ),
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[
            router,
            reversals_router,
            internal_router,
            admin_router,
            callbacks_router,
            standing_orders_router,
            standing_orders_internal_router,
            audit_router(service="transactions", table=audit_events),
            secrets_router(reseal=partial(_reseal, settings.key_ring()), audit_table=audit_events),
        ],
        lifespan=_lifespan(
            settings, temporal_client=temporal_client, accounts_transport=accounts_transport
        ),
        token_verifier=token_verifier,
    )
    return app
