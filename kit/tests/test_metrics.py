"""GET /metrics on every service: Prometheus text, no token, its own port when configured;
HTTP latency by route template; the pool gauges; 429s counted by limit."""

import base64
import socket
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from contracts.auth import CUSTOMER_SCOPES, PrincipalKind
from kit.app import create_service_app
from kit.auth import Principal
from kit.errors import TooManyRequests
from kit.ratelimit import MONEY_BUCKET, RateLimiter, rate_limit_storage, rate_limited
from kit.settings import ServiceSettings
from kit.testing import TestIssuer, app_client

MIGRATIONS_PATH = Path(__file__).parent / "two_revisions"
CHAIN_KEY = base64.b64encode(b"m" * 32).decode()
# Never connected to: these tests answer without the database.
DATABASE_URL = "postgresql://nobody@127.0.0.1:9/nothing"
SERVICE = "metricstest"
_ISSUER = TestIssuer()
# Minted at import: it must outlive the whole suite, which takes longer than the
# 15 minutes a token lives by default.
_IMPORT_TOKEN_LIFETIME_SECONDS = 24 * 3600
_TOKEN = _ISSUER.token(
    "c", PrincipalKind.customer, CUSTOMER_SCOPES, lifetime_seconds=_IMPORT_TOKEN_LIFETIME_SECONDS
)


class _Settings(ServiceSettings):
    # A prefix of its own, so that no variable of the environment leaks into the test.
    model_config = SettingsConfigDict(env_prefix="METRICS_TEST_")


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/v1/payments")
    async def pay(
        principal: Annotated[Principal, Depends(rate_limited(MONEY_BUCKET))],
    ) -> dict[str, str]:
        return {"by": principal.subject}

    return router


def _app(**settings: object) -> FastAPI:
    return create_service_app(
        service=SERVICE,
        title="metrics",
        description="a service with one route",
        version="0",
        settings=_Settings(
            database_url=DATABASE_URL,
            log_json=True,
            audit_chain_key=SecretStr(CHAIN_KEY),
            database_pool_size=3,
            rate_limit_money="2/minute",
            **settings,  # type: ignore[arg-type]
        ),
        migrations_path=MIGRATIONS_PATH,
        routers=[_router()],
        token_verifier=_ISSUER.verifier,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestMetricsEndpoint:
    async def test_prometheus_text_without_a_token_and_not_in_the_schema(self) -> None:
        async with app_client(_app()) as client:
            response = await client.get("/metrics")
            schema = (await client.get("/openapi.json")).json()
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)
        pool = frozenset({("service", SERVICE)})
        assert samples[("sagabank_db_pool_size_connections", pool)] == 6.0
        assert samples[("sagabank_db_pool_in_use_connections", pool)] == 0.0
        assert "/metrics" not in schema["paths"]

    async def test_disabled_answers_404(self) -> None:
        async with app_client(_app(metrics_enabled=False)) as client:
            response = await client.get("/metrics")
        assert response.status_code == 404

    async def test_a_port_of_its_own_moves_it_off_the_service_port(self) -> None:
        port = _free_port()
        async with app_client(_app(metrics_port=port)) as client, httpx.AsyncClient() as http:
            on_service_port = await client.get("/metrics")
            on_metrics_port = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert on_service_port.status_code == 404
        assert on_metrics_port.status_code == 200
        assert "sagabank_db_pool_size_connections" in on_metrics_port.text
        # Stopped with the app.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/metrics")


class TestHttpLatency:
    async def test_labelled_by_route_template_not_path(self) -> None:
        labels = {"service": SERVICE, "route": "/v1/things/{thing_id}", "method": "GET"}
        before = _value("sagabank_http_request_duration_seconds_count", **labels, status="200")
        async with app_client(_app()) as client:
            for thing_id in ("a", "b", "c"):
                assert (await client.get(f"/v1/things/{thing_id}")).status_code == 200
        after = _value("sagabank_http_request_duration_seconds_count", **labels, status="200")
        assert after - before == 3
        assert (
            REGISTRY.get_sample_value(
                "sagabank_http_request_duration_seconds_count",
                {**labels, "route": "/v1/things/a", "status": "200"},
            )
            is None
        )

    async def test_unmatched_paths_share_one_label(self) -> None:
        labels = {"service": SERVICE, "route": "unmatched", "method": "GET", "status": "404"}
        before = _value("sagabank_http_request_duration_seconds_count", **labels)
        async with app_client(_app()) as client:
            for path in ("/wp-admin", "/.env", "/v1/things"):
                assert (await client.get(path)).status_code == 404
        after = _value("sagabank_http_request_duration_seconds_count", **labels)
        assert after - before == 3

    async def test_the_scrape_itself_is_not_counted(self) -> None:
        labels = {"service": SERVICE, "route": "/metrics", "method": "GET", "status": "200"}
        async with app_client(_app()) as client:
            await client.get("/metrics")
            await client.get("/metrics")
        assert (
            REGISTRY.get_sample_value("sagabank_http_request_duration_seconds_count", labels)
            is None
        )


class TestRateLimitRejections:
    async def test_a_429_is_counted_by_limit(self) -> None:
        labels = {"service": SERVICE, "limit": MONEY_BUCKET}
        before = _value("sagabank_rate_limit_rejections_total", **labels)
        async with app_client(_app()) as client:
            statuses = [
                (
                    await client.post("/v1/payments", headers={"Authorization": f"Bearer {_TOKEN}"})
                ).status_code
                for _ in range(3)
            ]
        assert statuses == [200, 200, 429]
        assert _value("sagabank_rate_limit_rejections_total", **labels) - before == 1

    async def test_the_limiter_counts_under_its_service(self) -> None:
        limiter = RateLimiter(
            {MONEY_BUCKET: "1/minute"}, rate_limit_storage("memory://"), service="other"
        )
        before = _value("sagabank_rate_limit_rejections_total", service="other", limit="money")
        await limiter.hit(MONEY_BUCKET, "customer:a")
        with pytest.raises(TooManyRequests):
            await limiter.hit(MONEY_BUCKET, "customer:a")
        after = _value("sagabank_rate_limit_rejections_total", service="other", limit="money")
        assert after - before == 1
