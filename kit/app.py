"""The application shell every service shares: request context, access log, health, errors."""

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Final

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.common import Health, MigrationsCheck
from contracts.problem import CommonProblem, Problem, problem_type
from kit.audit import checkpoint_job
from kit.audit_checkpoints import CheckpointDirectory
from kit.auth import JwksKeySource, KeysStatus, TokenVerifier, token_verifier_of
from kit.db import Database, ServiceDatabase
from kit.docs_page import install_docs_page
from kit.jobs import ExclusiveJob
from kit.logging import configure_logging
from kit.metrics_http import (
    HttpMetricsMiddleware,
    MetricsServer,
    add_metrics_route,
    watch_database_pool,
)
from kit.migrations import SchemaCheck
from kit.openapi import install_openapi, operation_id
from kit.problems import install_problem_handlers, internal_error_problem, problem_response
from kit.ratelimit import MONEY_BUCKET, TOKEN_BUCKET, RateLimiter, rate_limit_storage
from kit.settings import ServiceSettings
from kit.tracing import configure_tracing, current_trace_id, instrument_app

log = structlog.get_logger()

_REQUEST_ID_LENGTH_MAX = 128
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    # Only framing is forbidden here: /docs and its redirect page send stricter ones of their
    # own (kit.docs_page), which `_with_security_headers` leaves alone.
    (b"content-security-policy", b"frame-ancestors 'none'"),
    # Browsers honour it only over https, where the services sit behind TLS in production.
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Binds a request id to every log line, logs one access line, caps the body size,
    and turns an unexpected exception into a 500 problem without leaking its trace."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_max_bytes: int,
        security_headers: Sequence[tuple[bytes, bytes]] = SECURITY_HEADERS,
    ) -> None:
        self.app = app
        self.body_max_bytes = body_max_bytes
        self.security_headers = security_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = dict(scope["headers"])
        request_id = _request_id_of(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                response_headers = list(message.get("headers", []))
                response_headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = _with_security_headers(response_headers, self.security_headers)
            await send(message)

        received_bytes = 0

        async def receive_bounded() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > self.body_max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            if _declared_length(headers) > self.body_max_bytes:
                raise _BodyTooLarge
            await self.app(scope, receive_bounded, send_with_headers)
        except _BodyTooLarge:
            if status_holder["started"]:
                raise
            problem = Problem(
                type=problem_type(CommonProblem.payload_too_large),
                title="Payload too large",
                status=413,
                detail=f"The request body exceeds {self.body_max_bytes} bytes.",
                instance=path,
                trace_id=current_trace_id(),
                request_id=request_id,
            )
            await problem_response(problem)(scope, receive, send_with_headers)
        except Exception:
            log.exception("request.unhandled_error")
            if status_holder["started"]:
                raise
            problem = internal_error_problem(
                instance=path, trace_id=current_trace_id(), request_id=request_id
            )
            await problem_response(problem)(scope, receive, send_with_headers)
        finally:
            log.info(
                "http.request",
                method=scope["method"],
                path=path,
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def _with_security_headers(
    headers: list[tuple[bytes, bytes]], security_headers: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The response's headers and each security header it does not set itself: a page
    with a stricter policy of its own (the issuer's sign-in page) keeps it alone."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *(header for header in security_headers if header[0] not in present)]


def _request_id_of(headers: dict[bytes, bytes]) -> str:
    """The caller's X-Request-ID if it is short and printable, else a new one."""
    supplied = headers.get(b"x-request-id", b"").decode("latin-1")
    if supplied and len(supplied) <= _REQUEST_ID_LENGTH_MAX and supplied.isprintable():
        return supplied
    return str(uuid.uuid4())


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length", b"0") or 0)
    except ValueError:
        return 0


def create_service_app(
    *,
    service: str,
    title: str,
    description: str,
    version: str,
    settings: ServiceSettings,
    migrations_path: Path,
    routers: Sequence[APIRouter],
    lifespan: Lifespan | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build a service: its routers plus the shell (health, problems, request context).

    The database lives on `app.state.database`; `lifespan` runs inside it for the
    service's own resources (HTTP clients, background tasks). Bearer tokens are verified
    by `token_verifier` (tests pass one) or else against `settings.auth_jwks_url`.
    """
    configure_logging(service=service, level=settings.log_level, json=settings.log_json)
    configure_tracing(service)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = app.state.database = _open_database(service, settings)
        publisher = _checkpoint_publisher(app, database, service=service, settings=settings)
        key_source = _install_token_verifier(app, settings, token_verifier, service=service)
        stop_metrics = _start_metrics(database, service=service, settings=settings)
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            if publisher is not None:
                await publisher.stop()
            if key_source is not None:
                await key_source.close()
            stop_metrics()
            await database.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=app_lifespan,
        generate_unique_id_function=operation_id,
        # kit.docs_page serves /docs and its redirect page without a CDN. ReDoc's page loads
        # its script from one (blank offline): off, Swagger UI is the one page (decision 0040).
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.rate_limiter = RateLimiter(
        {MONEY_BUCKET: settings.rate_limit_money, TOKEN_BUCKET: settings.rate_limit_token},
        rate_limit_storage(settings.rate_limit_storage_uri),
        service=service,
    )
    _add_cors(app, settings)
    app.add_middleware(RequestContextMiddleware, body_max_bytes=settings.request_body_max_bytes)
    install_problem_handlers(app)
    _add_metrics(app, service=service, settings=settings)

    _add_health_routes(app, service=service, migrations_path=migrations_path)
    for router in routers:
        app.include_router(router)
    install_openapi(app, issuer_url=settings.issuer_url())
    install_docs_page(app, issuer_url=settings.issuer_url())
    instrument_app(app)
    return app


def _add_cors(app: FastAPI, settings: ServiceSettings) -> None:
    """Answer the browser origins the settings allow (none by default)."""
    if settings.cors_allow_origins:
        # Bearer tokens travel in a header, never a cookie: no credentials mode needed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Prefer"],
            expose_headers=["Location", "Retry-After", "Idempotency-Replayed", "X-Request-ID"],
            max_age=600,
        )


# -- metrics (docs/decisions/0024-metrics.md) -------------------------------------------


def _add_metrics(app: FastAPI, *, service: str, settings: ServiceSettings) -> None:
    """Measure every request (outermost, so a 413 or 500 the shell answers counts too) and
    serve GET /metrics on the service's port unless a port of its own is configured."""
    if not settings.metrics_enabled:
        return
    app.add_middleware(HttpMetricsMiddleware, service=service)
    if settings.metrics_port is None:
        add_metrics_route(app)


def _start_metrics(
    database: Database, *, service: str, settings: ServiceSettings
) -> Callable[[], None]:
    """Feed the pool gauges and open the metrics port, if any; returns what stops both."""
    if not settings.metrics_enabled:
        return lambda: None
    stop_watching = watch_database_pool(
        service, database.engine.pool, connections_max=database.connections_max
    )
    server = None if settings.metrics_port is None else MetricsServer.start(settings.metrics_port)

    def stop() -> None:
        stop_watching()
        if server is not None:
            server.stop()

    return stop


def _install_token_verifier(
    app: FastAPI, settings: ServiceSettings, token_verifier: TokenVerifier | None, *, service: str
) -> JwksKeySource | None:
    """Verify bearer tokens with `token_verifier` (tests) or the issuer's JWKS; the key
    source to close at shutdown, if one was opened."""
    if token_verifier is not None:
        app.state.token_verifier = token_verifier
        return None
    if settings.auth_jwks_url is None:
        return None
    key_source = JwksKeySource(
        settings.auth_jwks_url,
        ttl_seconds=settings.auth_jwks_ttl_seconds,
        refetch_interval_seconds=settings.auth_jwks_refetch_interval_seconds,
    )
    app.state.token_verifier = TokenVerifier(
        key_source, issuer=settings.auth_issuer, audience=settings.token_audience(service)
    )
    # In the background: the issuer may be starting beside us; /readyz waits for it.
    key_source.start()
    return key_source


def _open_database(service: str, settings: ServiceSettings) -> Database:
    return Database(
        settings.async_database_url(),
        pool_size=settings.database_pool_size,
        application_name=service,
        audit_chain_key=settings.audit_chain_key_bytes(),
    )


def _checkpoint_publisher(
    app: FastAPI, database: Database, *, service: str, settings: ServiceSettings
) -> ExclusiveJob | None:
    """The audit chain's checkpoint publisher, started; None without a checkpoint directory
    (the service's audit router finds the directory on `app.state.audit_checkpoints`)."""
    directory = settings.audit_checkpoint_dir
    checkpoints = app.state.audit_checkpoints = (
        None if directory is None else CheckpointDirectory(directory)
    )
    if checkpoints is None:
        return None
    publisher = checkpoint_job(
        database,
        service=service,
        checkpoints=checkpoints,
        dsn=settings.asyncpg_dsn(),
        interval_seconds=settings.audit_checkpoint_interval_seconds,
    )
    publisher.start()
    return publisher


def _add_health_routes(app: FastAPI, *, service: str, migrations_path: Path) -> None:
    """`/healthz` (the process is alive) and `/readyz` (the database answers, its schema
    at this release's newest migration or newer, the token issuer's keys loaded)."""

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> Health:
        return Health(status="ok", service=service)

    schema_check = SchemaCheck(migrations_path)

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The database is reachable and its schema at this release's newest migration "
        "or newer",
        responses={503: {"model": Health}},
    )
    async def readyz(request: Request, database: ServiceDatabase) -> JSONResponse:
        checks: dict[str, str] = {}
        key_source = getattr(token_verifier_of(request.app), "key_source", None)
        if isinstance(key_source, JwksKeySource):
            # Not ready before the issuer's keys first load (no token could verify); once
            # loaded, ready even while the issuer is away: the cached keys serve.
            checks["keys"] = key_source.status
        try:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                checks["database"] = "ok"
                checks["migrations"] = await schema_check.check(connection)
        except Exception as error:
            checks.setdefault("database", f"unreachable: {type(error).__name__}")
        # Newer is ready: during a rollout (or after a rollback) the running pods serve on a
        # schema the migration Job has already moved on (expand-only, see deploy/README.md).
        ready = (
            checks.get("database") == "ok"
            and checks.get("migrations") in (MigrationsCheck.ok, MigrationsCheck.ahead)
            and checks.get("keys") != KeysStatus.not_loaded
        )
        body = Health(status="ready" if ready else "not_ready", service=service, checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
