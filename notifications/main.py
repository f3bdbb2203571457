"""The notifications service application."""

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpcore
import httpx
import structlog
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.secrets import ResealBatch, ResealRequest
from kit.app import Lifespan, create_service_app
from kit.audit import audit_router
from kit.auth import TokenVerifier
from kit.db import Database, database_of
from kit.resealing import secrets_router
from kit.resources import Clock, install_resources, utc_now
from kit.sealing import KeyRing
from notifications import repository, service
from notifications.api import router
from notifications.config import Settings
from notifications.dispatcher import Dispatcher, DispatcherOptions
from notifications.mail import SmtpServer
from notifications.models import AUDIT_EVENTS
from notifications.resources import NotificationsResources
from notifications.service import WebhookRules
from notifications.ssrf import GuardedTransport, Resolver, TargetPolicy, system_resolver
from notifications.webhook_catalogue import install_webhook_catalogue

MIGRATIONS_PATH = Path(__file__).parent / "migrations"
# At start, plain-text secrets (rows from before sealing) are sealed in batches of this
# many, at most this many batches (endpoints are capped per customer, so this covers
# 1,000,000 secrets; the rest would wait for `sagabank secrets rotate`).
SEAL_BATCH_SIZE = 500
SEAL_BATCHES_MAX = 2000
# While the database is away at start, the sealing is retried this often, for an hour.
SEAL_RETRY_SECONDS = 30.0
SEAL_ATTEMPTS_MAX = 120
# Beyond the attempts in flight, how long a stopping service waits for them to be recorded.
SHUTDOWN_MARGIN_SECONDS = 5.0

log = structlog.get_logger()


def _smtp_server(settings: Settings) -> SmtpServer | None:
    """The SMTP server emails go through; None (no email) unless a host and sender are set."""
    if settings.smtp_host is None or settings.email_from is None:
        return None
    return SmtpServer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.email_from,
        security=settings.smtp_security,
        timeout_seconds=settings.smtp_timeout_seconds,
        username=settings.smtp_username,
        password=(
            None if settings.smtp_password is None else settings.smtp_password.get_secret_value()
        ),
    )


def _dispatcher_options(settings: Settings) -> DispatcherOptions:
    return DispatcherOptions(
        batch_size=settings.dispatcher_batch_size,
        concurrency=settings.dispatcher_concurrency,
        poll_interval_seconds=settings.dispatcher_poll_interval_seconds,
        lease_seconds=settings.dispatcher_lease_seconds,
        webhook_timeout_seconds=settings.webhook_timeout_seconds,
        email_timeout_seconds=settings.smtp_timeout_seconds,
    )


def _webhook_client(
    settings: Settings,
    *,
    policy: TargetPolicy,
    resolver: Resolver,
    network_backend: httpcore.AsyncNetworkBackend | None,
    ssl_context: ssl.SSLContext | None,
) -> httpx.AsyncClient:
    """The client deliveries go out through: every connection checked by the SSRF guard,
    no redirects followed, no proxy taken from the environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(
            policy=policy,
            resolver=resolver,
            network_backend=network_backend,
            ssl_context=ssl_context,
            connections_max=settings.dispatcher_concurrency * 2,
        ),
        timeout=httpx.Timeout(
            settings.webhook_timeout_seconds, connect=settings.webhook_connect_timeout_seconds
        ),
        follow_redirects=False,
        trust_env=False,
    )


async def _sealed_plain_text(database: Database, ring: KeyRing) -> bool:
    """Seal the plain-text secrets; False when the database could not be reached."""
    try:
        await service.seal_plain_text_secrets(
            database.sessions, ring, batch_size=SEAL_BATCH_SIZE, batches_max=SEAL_BATCHES_MAX
        )
    except (OSError, SQLAlchemyError) as error:
        log.warning("webhook_secret.sealing_deferred", error=repr(error)[:300])
        return False
    return True


async def _keep_sealing(database: Database, ring: KeyRing) -> None:
    """Retry the sealing every SEAL_RETRY_SECONDS until it succeeds (bounded)."""
    for _ in range(SEAL_ATTEMPTS_MAX):
        await asyncio.sleep(SEAL_RETRY_SECONDS)
        if await _sealed_plain_text(database, ring):
            return
    log.error("webhook_secret.sealing_given_up", attempts=SEAL_ATTEMPTS_MAX)


def _lifespan(
    settings: Settings,
    *,
    webhook_client: Callable[[], httpx.AsyncClient],
    smtp: SmtpServer | None,
    clock: Clock,
    rng: random.Random | None,
    webhook_rules: WebhookRules,
) -> Lifespan:
    """The dispatcher and its webhook client, for as long as the service runs, and the
    resources the routes use."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = database_of(app)
        # Before the first delivery: no plain-text secret outlives a start (decision 0019).
        # A database that is away must not keep the service from starting (its readiness
        # says so): the sealing is then retried in the background.
        sealing = None
        if not await _sealed_plain_text(database, webhook_rules.key_ring):
            sealing = asyncio.create_task(_keep_sealing(database, webhook_rules.key_ring))
        client = webhook_client()
        options = _dispatcher_options(settings)
        dispatcher = Dispatcher(
            sessions=database.sessions,
            client=client,
            options=options,
            clock=clock,
            key_ring=webhook_rules.key_ring,
            smtp=smtp,
            rng=rng,
        )
        install_resources(
            app,
            NotificationsResources(
                clock=clock,
                webhook_rules=webhook_rules,
                email_enabled=smtp is not None,
                dispatcher=dispatcher,
            ),
        )
        if settings.dispatcher_enabled:
            dispatcher.start()
        try:
            yield
        finally:
            if sealing is not None:
                sealing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sealing
            await dispatcher.stop(
                timeout_seconds=max(options.webhook_timeout_seconds, options.email_timeout_seconds)
                + SHUTDOWN_MARGIN_SECONDS
            )
            await client.aclose()

    return lifespan


async def _reseal(ring: KeyRing, session: AsyncSession, request: ResealRequest) -> ResealBatch:
    return await repository.reseal_secrets(session, ring, after=request.after, limit=request.limit)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    resolver: Resolver = system_resolver,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
    rng: random.Random | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """The service. Tests pass a `clock` they move, a stub `resolver`, a `network_backend`
    that refuses to leave the machine, an `ssl_context` trusting their receiver, and a
    `token_verifier` for their own issuer (else tokens verify against the issuer's JWKS,
    `NOTIFICATIONS_AUTH_JWKS_URL`)."""
    settings = settings or Settings()  # read from the environment
    policy = TargetPolicy(
        allow_http=settings.webhook_allow_http, allow_loopback=settings.webhook_allow_loopback
    )
    smtp = _smtp_server(settings)
    key_ring = settings.key_ring()

    app = create_service_app(
        service="notifications",
        title="Sagabank notifications",
        description=(
            "Accepts transfer events from the saga and fans them out: signed webhooks "
            "(Standard Webhooks) to customers' endpoints, retried durably, and emails."
        ),
        version="0.2.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[
            router,
            audit_router(service="notifications", table=AUDIT_EVENTS),
            secrets_router(reseal=partial(_reseal, key_ring), audit_table=AUDIT_EVENTS),
        ],
        lifespan=_lifespan(
            settings,
            webhook_client=partial(
                _webhook_client,
                settings,
                policy=policy,
                resolver=resolver,
                network_backend=network_backend,
                ssl_context=ssl_context,
            ),
            smtp=smtp,
            clock=clock,
            rng=rng,
            webhook_rules=WebhookRules(
                policy=policy,
                resolver=resolver,
                endpoints_per_customer_max=settings.webhook_endpoints_per_customer_max,
                secret_grace_seconds=settings.webhook_secret_grace_seconds,
                key_ring=key_ring,
            ),
        ),
        token_verifier=token_verifier,
    )
    install_webhook_catalogue(app)
    return app
