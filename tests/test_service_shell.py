"""The service shell: request ids, health, problem+json for every kind of error."""

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from fastapi import APIRouter
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from kit.app import RequestContextMiddleware
from kit.settings import to_asyncpg_dsn
from kit.testing import app_client, assert_problem
from notifications.config import Settings
from notifications.main import MIGRATIONS_PATH, create_app
from notifications.tests.conftest import SECRETS_KEYS

KEYS = SecretStr(SECRETS_KEYS)
W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
W3C_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"

boom = APIRouter()


@boom.get("/boom")
async def explode() -> None:
    raise RuntimeError("secret internal detail")


@pytest.fixture
async def client(database_factory: object) -> AsyncIterator[httpx.AsyncClient]:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(
        Settings(database_url=url, log_json=True, request_body_max_bytes=2048, secrets_keys=KEYS)
    )
    app.include_router(boom)
    async with app_client(app) as client:
        yield client


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-123"


async def test_request_id_is_generated(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert uuid.UUID(response.headers["x-request-id"])


async def test_ready_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


async def test_not_ready_when_migrations_behind(
    database_factory: object, database_admin_url: Callable[[str], str]
) -> None:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(Settings(database_url=url, log_json=True, secrets_keys=KEYS))
    async with app_client(app) as client:
        # As the superuser: the service's own role may only read alembic_version.
        admin = await asyncpg.connect(to_asyncpg_dsn(database_admin_url(url)), timeout=10)
        try:
            # 0001 stays an ancestor of the head whatever comes later; a revision the
            # service does not know would be a newer release's, hence ready (kit/tests).
            await admin.execute("UPDATE alembic_version SET version_num = '0001'")
        finally:
            await admin.close()
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "behind"


async def test_not_ready_without_database() -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/nowhere", log_json=True, secrets_keys=KEYS
    )
    async with app_client(create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


async def test_unexpected_error_is_a_problem_without_trace(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"X-Request-ID": "trace-me"})
    body = assert_problem(response, 500, "internal-error")
    assert isinstance(body["trace_id"], str)
    assert W3C_TRACE_ID.match(body["trace_id"]), body
    assert body["request_id"] == "trace-me"
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "trace-me"


class TestProblemsNameTheTrace:
    """A problem's `trace_id` is the W3C trace of the request's span (the caller's when it
    sends `traceparent`); the request id stays beside it as `request_id`."""

    @pytest.mark.parametrize(
        ("path", "status", "slug"),
        [("/boom", 500, "internal-error"), ("/nowhere", 404, "not-found")],
    )
    async def test_the_callers_trace(
        self, client: httpx.AsyncClient, path: str, status: int, slug: str
    ) -> None:
        response = await client.get(
            path, headers={"traceparent": CALLER_TRACEPARENT, "X-Request-ID": "req-7"}
        )
        body = assert_problem(response, status, slug)
        assert body["trace_id"] == CALLER_TRACE_ID
        assert body["request_id"] == "req-7"

    async def test_oversized_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/events",
            content=b"x" * 4096,
            headers={"content-type": "application/json", "traceparent": CALLER_TRACEPARENT},
        )
        body = assert_problem(response, 413, "payload-too-large")
        assert body["trace_id"] == CALLER_TRACE_ID
        assert isinstance(body["request_id"], str)


async def test_log_lines_of_a_request_carry_its_trace(
    database_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(Settings(database_url=url, log_json=True, secrets_keys=KEYS))
    app.include_router(boom)
    async with app_client(app) as client:
        await client.get("/boom", headers={"traceparent": CALLER_TRACEPARENT})
    lines = _json_lines(capsys.readouterr().err)
    request_lines = [line for line in lines if line.get("trace_id") == CALLER_TRACE_ID]
    events = {line["event"] for line in request_lines}
    assert {"request.unhandled_error", "http.request"} <= events, lines
    for line in request_lines:
        assert isinstance(line["span_id"], str)
        assert W3C_SPAN_ID.match(line["span_id"])


async def test_readiness_probe_logs_no_alembic_chatter(
    database_factory: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(Settings(database_url=url, log_json=True, secrets_keys=KEYS))
    async with app_client(app) as client:
        for _ in range(2):
            assert (await client.get("/readyz")).status_code == 200
    events = [str(line.get("event")) for line in _json_lines(capsys.readouterr().err)]
    assert events.count("http.request") == 2, events
    assert not [event for event in events if "Context impl" in event], events
    assert "Will assume transactional DDL." not in events


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")


async def test_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events", content=b"x" * 4096, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload-too-large")


async def test_openapi_describes_the_service(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["title"] == "Sagabank notifications"
    assert document["info"]["version"]
    assert (await client.get("/docs")).status_code == 200


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/healthz"), await client.get("/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_response_keeps_a_security_header_it_sets_itself() -> None:
    """The issuer's sign-in page sends its own, stricter policy: one policy, not two."""

    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        policy = (b"content-security-policy", b"default-src 'none'")
        await send({"type": "http.response.start", "status": 200, "headers": [policy]})
        await send({"type": "http.response.body", "body": b"<p>page</p>"})

    transport = httpx.ASGITransport(app=RequestContextMiddleware(page, body_max_bytes=1024))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/")

    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_no_cross_origin_calls_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/webhook-endpoints", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers
    simple = await client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in simple.headers


async def test_cross_origin_calls_only_from_the_allow_list(database_factory: object) -> None:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    settings = Settings(
        database_url=url,
        log_json=True,
        cors_allow_origins=["https://app.example.com"],
        secrets_keys=KEYS,
    )
    async with app_client(create_app(settings)) as client:
        allowed = await client.options("/v1/webhook-endpoints", headers=PREFLIGHT)
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        foreign = await client.options(
            "/v1/webhook-endpoints", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers
