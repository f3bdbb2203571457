"""The operator console: server-rendered pages over the four services' APIs, for staff
signed in through the issuer (docs/decisions/0038-operator-console.md)."""

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Final

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from console import admin_pages, audit_pages, pages, sign_in
from console.bank_api import SERVICE_NAMES, BankApi
from console.config import Settings
from console.issuer import Issuer
from console.resources import ConsoleResources
from console.sessions import SessionStore
from console.web import SIGN_IN_BUCKET, SIGN_IN_PATH, CsrfRefused, SignInRequired, render
from contracts.auth import METADATA_PATH
from contracts.common import Health
from contracts.money import display_amount
from kit.app import Lifespan, RequestContextMiddleware
from kit.http import create_client
from kit.logging import configure_logging
from kit.metrics_http import HttpMetricsMiddleware, add_metrics_route
from kit.problems import install_problem_handlers
from kit.ratelimit import RateLimiter, rate_limit_storage
from kit.resources import Clock, install_resources, resources_of, utc_now
from kit.tracing import configure_tracing, instrument_app

SERVICE: Final = "console"
TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"
ISSUER: Final = "issuer"
# On every response: no script or style but the console's own files, no framing, no
# forms posted elsewhere; nothing cached, sniffed or sent as a referrer.
SECURITY_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)  # autoescapes .html
    templates.env.filters["money"] = display_amount
    return templates


def _clients(
    settings: Settings, transports: Mapping[str, httpx.AsyncBaseTransport]
) -> dict[str, httpx.AsyncClient]:
    """One client per service and one for the issuer (its internal URL)."""
    urls = {
        "accounts": settings.accounts_url,
        "transactions": settings.transactions_url,
        "fraud": settings.fraud_url,
        "notifications": settings.notifications_url,
        ISSUER: settings.issuer_url,
    }
    return {
        name: create_client(
            url,
            timeout_seconds=settings.upstream_timeout_seconds,
            transport=transports.get(name),
        )
        for name, url in urls.items()
    }


def _lifespan(
    settings: Settings,
    store: SessionStore,
    clock: Clock,
    transports: Mapping[str, httpx.AsyncBaseTransport],
) -> Lifespan:
    """Opens the clients and installs the resources for the routes; closes the clients."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = _clients(settings, transports)
        install_resources(
            app,
            ConsoleResources(
                clock=clock,
                store=store,
                limiter=RateLimiter(
                    {SIGN_IN_BUCKET: settings.rate_limit_sign_in},
                    rate_limit_storage("memory://"),
                    service=SERVICE,
                ),
                issuer=Issuer(
                    clients[ISSUER],
                    public_url=settings.issuer_public_url,
                    client_id=settings.client_id,
                    redirect_uri=settings.callback_uri,
                    scopes=settings.scopes,
                ),
                bank=BankApi({name: clients[name] for name in SERVICE_NAMES}),
                templates=_templates(),
                secure_cookies=settings.secure_cookies,
                temporal_ui_url=settings.temporal_ui_url,
                temporal_namespace=settings.temporal_namespace,
            ),
        )
        try:
            yield
        finally:
            for client in clients.values():
                await client.aclose()

    return lifespan


def _add_handlers(app: FastAPI) -> None:
    """Without a session every page sends the browser to sign in; a form without the
    session's CSRF token is refused (403), and nothing is done."""

    @app.exception_handler(SignInRequired)
    async def on_sign_in_required(request: Request, _error: SignInRequired) -> Response:
        return RedirectResponse(SIGN_IN_PATH, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def on_csrf_refused(request: Request, _error: CsrfRefused) -> HTMLResponse:
        resources = resources_of(request.app, ConsoleResources)
        context = {"problem": "This form has expired or did not come from the console."}
        return render(request, resources, "refused.html", context, status_code=403)


def _add_health_routes(app: FastAPI) -> None:
    """`/healthz` (alive) and `/readyz` (the issuer answers: without it nobody signs in)."""

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> Health:
        return Health(status="ok", service=SERVICE)

    @app.get("/readyz", tags=["health"], summary="The issuer answers", responses={503: {}})
    async def readyz(request: Request) -> JSONResponse:
        resources = resources_of(request.app, ConsoleResources)
        try:
            answer = await resources.issuer.http.get(METADATA_PATH)
            issuer = "ok" if answer.status_code == 200 else f"answered {answer.status_code}"
        except httpx.HTTPError as error:
            issuer = f"unreachable: {type(error).__name__}"
        ready = issuer == "ok"
        body = Health(
            status="ready" if ready else "not_ready", service=SERVICE, checks={"issuer": issuer}
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """The console; `transports` stand in for the services and the issuer (keys: the
    service names and `issuer`) in tests, and `clock` moves their time."""
    settings = settings or Settings()  # read from the environment
    configure_logging(service=SERVICE, level=settings.log_level, json=settings.log_json)
    configure_tracing(SERVICE)
    store = SessionStore(
        clock=clock,
        idle_timeout_seconds=settings.session_idle_timeout_seconds,
        lifetime_seconds=settings.session_lifetime_seconds,
        sessions_max=settings.sessions_max,
    )
    app = FastAPI(
        title="Sagabank console",
        description="The operator console: transfers, reviews and audit, for signed-in staff.",
        version="0.1.0",
        lifespan=_lifespan(settings, store, clock, transports or {}),
        # Pages, not an API: nothing to document for machines.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.session_store = store  # for the tests' seam (console.testing) only
    app.add_middleware(
        RequestContextMiddleware,
        body_max_bytes=settings.request_body_max_bytes,
        security_headers=SECURITY_HEADERS,
    )
    install_problem_handlers(app)
    _add_handlers(app)
    if settings.metrics_enabled:
        app.add_middleware(HttpMetricsMiddleware, service=SERVICE)
        add_metrics_route(app)
    _add_health_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (sign_in.router, pages.router, audit_pages.router, admin_pages.router):
        app.include_router(router)
    instrument_app(app)
    return app
