"""The shared route parameters: the clock from the app's resources, the audit actor."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from contracts.auth import PrincipalKind, Scope
from kit.params import AuditActor, Now
from kit.problems import install_problem_handlers
from kit.resources import ServiceResources, install_resources
from kit.testing import TestIssuer, app_client

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, TestIssuer]]:
    issuer = TestIssuer()
    app = FastAPI()
    app.state.token_verifier = issuer.verifier
    install_problem_handlers(app)
    install_resources(app, ServiceResources(clock=lambda: T0))

    @app.get("/now")
    async def now(at: Now) -> str:
        return at.isoformat()

    @app.get("/actor")
    async def actor(who: AuditActor) -> dict[str, str | None]:
        return {"id": who.actor_id, "type": who.actor_type.value, "request": who.request_id}

    async with app_client(app) as started:
        yield started, issuer


async def test_now_is_the_resources_clock(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, _issuer = client
    assert (await http.get("/now")).json() == T0.isoformat()


async def test_the_actor_is_the_token_subject_and_kind(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, issuer = client
    response = await http.get("/actor", headers=issuer.operator("operator-7"))
    assert response.json() == {"id": "operator-7", "type": "operator", "request": None}


async def test_a_subject_too_long_for_the_audit_column_is_named_by_its_hash(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, issuer = client
    headers = issuer.headers("s" * 200, PrincipalKind.service, {Scope.audit_read})
    first = (await http.get("/actor", headers=headers)).json()
    again = (await http.get("/actor", headers=headers)).json()
    assert first["id"].startswith("sha256:")
    assert len(first["id"]) == 63
    assert first == again


async def test_the_actor_needs_a_token(client: tuple[httpx.AsyncClient, TestIssuer]) -> None:
    http, _issuer = client
    assert (await http.get("/actor")).status_code == 401
