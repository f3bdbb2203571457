"""The security matrix: every route of the service against forged tokens (401), a token
without the scope it needs (403) and a foreign customer's objects (404). Every cell also
proves that nothing changed: a fingerprint of every table is the same before and after.

The cells share one service and one database, seeded once (alice's endpoint with a
delivery, her email contact, mallory's endpoint): a cell that changed anything fails on
its own fingerprint, and the next cell compares against its own "before", so one broken
cell cannot hide or fail another.
"""

import asyncio
import functools
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import text

from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    WORKER_SCOPES,
    PrincipalKind,
    Scope,
)
from kit.docs_page import DOCS_ASSETS_PATH
from kit.migrations import upgrade_to_head
from kit.settings import to_asyncpg_dsn, with_database
from kit.testing import app_client, assert_problem
from notifications.config import Settings
from notifications.main import MIGRATIONS_PATH, create_app
from notifications.models import Base
from notifications.tests.conftest import SECRETS_KEYS
from notifications.tests.support import (
    ISSUER,
    PUBLIC_ADDRESS,
    PUBLIC_HOST,
    Clock,
    LoopbackNetwork,
    StubResolver,
    transfer_event,
)

ALICE = str(uuid.uuid4())
MALLORY = str(uuid.uuid4())
URL = f"https://{PUBLIC_HOST}/hook"

# Reachable without a token, on purpose. Anything else answering an anonymous caller
# with other than 401 fails `TestAnonymousSweep`.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        # Swagger UI's script, stylesheet and ours, served for /docs (kit.docs_page).
        DOCS_ASSETS_PATH,
    }
)


# --- principals ------------------------------------------------------------------------


def _without(scopes: frozenset[Scope], missing: Scope) -> frozenset[Scope]:
    return frozenset(scope for scope in scopes if scope is not missing)


@dataclass(frozen=True)
class Principal:
    subject: str
    kind: PrincipalKind
    scopes: frozenset[Scope]

    def headers(self) -> dict[str, str]:
        return ISSUER.headers(self.subject, self.kind, self.scopes)


PRINCIPALS = {
    "customer": Principal(ALICE, PrincipalKind.customer, CUSTOMER_SCOPES),
    "foreign-customer": Principal(MALLORY, PrincipalKind.customer, CUSTOMER_SCOPES),
    "customer-without-webhooks-manage": Principal(
        ALICE, PrincipalKind.customer, _without(CUSTOMER_SCOPES, Scope.webhooks_manage)
    ),
    "worker": Principal("sagabank-worker", PrincipalKind.service, WORKER_SCOPES),
    "operator": Principal("operator", PrincipalKind.operator, OPERATOR_SCOPES),
    "operator-without-accounts-admin": Principal(
        "operator", PrincipalKind.operator, _without(OPERATOR_SCOPES, Scope.accounts_admin)
    ),
    "operator-without-audit-read": Principal(
        "operator", PrincipalKind.operator, _without(OPERATOR_SCOPES, Scope.audit_read)
    ),
    "operator-without-secrets-rotate": Principal(
        "operator", PrincipalKind.operator, _without(OPERATOR_SCOPES, Scope.secrets_rotate)
    ),
}


@functools.cache
def forgeries(principal_name: str) -> dict[str, dict[str, str]]:
    """The ten attack cells, minted once per principal (a fresh RSA key is slow)."""
    principal = PRINCIPALS[principal_name]
    return ISSUER.forgeries(principal.subject, principal.kind, principal.scopes)


FORGERY_NAMES = sorted(forgeries("customer"))
assert len(FORGERY_NAMES) == 10, FORGERY_NAMES


# --- the routes ------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteCase:
    """How to call a route as someone allowed to, and who must be refused."""

    method: str
    path: str
    allowed: str
    denied: tuple[str, ...]
    body: Callable[[], dict[str, Any]] | None = None
    # For a customer-owned object: the problem slug a foreign customer gets (404).
    foreign_slug: str | None = None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


CUSTOMER_CHANGES = ("customer-without-webhooks-manage", "operator", "worker")
CUSTOMER_READS = ("customer-without-webhooks-manage", "operator-without-accounts-admin", "worker")
AUDIT_READS = ("customer", "worker", "operator-without-audit-read")
ENDPOINT = "/v1/webhook-endpoints/{endpoint_id}"
DELIVERY = "/v1/deliveries/{delivery_id}"
ENDPOINT_GONE = "webhook-endpoint-not-found"
DELIVERY_GONE = "delivery-not-found"

CASES = [
    RouteCase("POST", "/v1/events", "worker", ("customer", "operator"), body=transfer_event),
    RouteCase(
        "GET", "/v1/events/{event_id}", "worker", ("customer", "operator-without-accounts-admin")
    ),
    RouteCase(
        "POST",
        "/v1/webhook-endpoints",
        "customer",
        CUSTOMER_CHANGES,
        body=lambda: {"url": URL, "event_types": ["transfer.completed"]},
    ),
    RouteCase("GET", "/v1/webhook-endpoints", "customer", CUSTOMER_READS),
    RouteCase("GET", ENDPOINT, "customer", CUSTOMER_READS, foreign_slug=ENDPOINT_GONE),
    RouteCase(
        "PATCH",
        ENDPOINT,
        "customer",
        CUSTOMER_CHANGES,
        body=lambda: {"description": "changed by the cell"},
        foreign_slug=ENDPOINT_GONE,
    ),
    RouteCase("DELETE", ENDPOINT, "customer", CUSTOMER_CHANGES, foreign_slug=ENDPOINT_GONE),
    RouteCase(
        "POST", f"{ENDPOINT}/disable", "customer", CUSTOMER_CHANGES, foreign_slug=ENDPOINT_GONE
    ),
    RouteCase(
        "POST", f"{ENDPOINT}/enable", "customer", CUSTOMER_CHANGES, foreign_slug=ENDPOINT_GONE
    ),
    RouteCase(
        "POST",
        f"{ENDPOINT}/rotate-secret",
        "customer",
        CUSTOMER_CHANGES,
        body=lambda: {"grace_seconds": 60},
        foreign_slug=ENDPOINT_GONE,
    ),
    RouteCase(
        "GET", f"{ENDPOINT}/deliveries", "customer", CUSTOMER_READS, foreign_slug=ENDPOINT_GONE
    ),
    RouteCase("GET", DELIVERY, "customer", CUSTOMER_READS, foreign_slug=DELIVERY_GONE),
    # Its customer, or an operator (accounts:admin: TestOperatorRedelivery) sends it again.
    RouteCase(
        "POST", f"{DELIVERY}/redeliver", "customer", CUSTOMER_READS, foreign_slug=DELIVERY_GONE
    ),
    RouteCase(
        "PUT",
        "/v1/email-contact",
        "customer",
        CUSTOMER_CHANGES,
        body=lambda: {"address": "changed@example.test"},
    ),
    RouteCase("GET", "/v1/email-contact", "customer", CUSTOMER_CHANGES),
    RouteCase("DELETE", "/v1/email-contact", "customer", CUSTOMER_CHANGES),
    RouteCase("GET", "/v1/admin/audit-events", "operator", AUDIT_READS),
    RouteCase("GET", "/v1/admin/audit-events/verify", "operator", AUDIT_READS),
    RouteCase("GET", "/v1/admin/audit-events/export", "operator", AUDIT_READS),
    RouteCase(
        "POST",
        "/v1/admin/secrets/reseal",
        "operator",
        ("customer", "worker", "operator-without-secrets-rotate"),
        body=lambda: {"limit": 10},
    ),
]
CASES_BY_KEY = {case.key: case for case in CASES}


# --- the world the cells share -----------------------------------------------------------


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    ids: dict[str, str] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.format(**self.ids)

    async def call(self, case: RouteCase, headers: dict[str, str]) -> httpx.Response:
        return await self.client.request(
            case.method,
            self.path(case.path),
            headers=headers,
            json=None if case.body is None else case.body(),
        )

    async def fingerprint(self) -> dict[str, tuple[int, str]]:
        """Row count and a digest of every row, per table of the service."""
        prints: dict[str, tuple[int, str]] = {}
        async with self.app.state.database.engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                # Table names come from our own metadata, never from input.
                statement = text(_FINGERPRINT_SQL.format(table=table.name))
                count, digest = (await connection.execute(statement)).one()
                prints[table.name] = (count, digest)
        return prints


_FINGERPRINT_SQL = (
    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
)


@pytest.fixture(scope="module")
async def module_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A database of this module's own, at head, dropped at the end."""
    name = f"test_notifications_security_{uuid.uuid4().hex[:12]}"
    admin_url = to_asyncpg_dsn(postgres_url)
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = with_database(admin_url, name)
    try:
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, url)
        yield url
    finally:
        connection = await asyncpg.connect(admin_url, timeout=10)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


@pytest.fixture(scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    network = LoopbackNetwork()
    app = create_app(
        Settings.model_validate(
            {
                "database_url": module_database_url,
                "log_json": True,
                "dispatcher_enabled": False,
                "secrets_keys": SECRETS_KEYS,
            }
        ),
        clock=Clock(datetime.now(UTC).replace(microsecond=0)),
        resolver=StubResolver({PUBLIC_HOST: [str(PUBLIC_ADDRESS)]}),
        network_backend=network,
        token_verifier=ISSUER.verifier,
    )
    async with app_client(app) as client:
        world = World(app=app, client=client)
        alice, mallory = PRINCIPALS["customer"].headers(), PRINCIPALS["foreign-customer"].headers()
        body = {"url": URL, "event_types": ["transfer.completed"]}
        created = await client.post("/v1/webhook-endpoints", headers=alice, json=body)
        assert created.status_code == 201, created.text
        mine = await client.post("/v1/webhook-endpoints", headers=mallory, json=body)
        assert mine.status_code == 201, mine.text
        contact = await client.put(
            "/v1/email-contact", headers=alice, json={"address": "alice@example.test"}
        )
        assert contact.status_code == 200, contact.text
        event = transfer_event(source_customer_id=ALICE, target_customer_id=None)
        published = await client.post(
            "/v1/events", headers=PRINCIPALS["worker"].headers(), json=event
        )
        assert published.status_code == 201, published.text
        endpoint_id = created.json()["id"]
        listed = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=alice)
        [delivery] = listed.json()["items"]
        world.ids = {
            "endpoint_id": endpoint_id,
            "delivery_id": delivery["id"],
            "event_id": event["id"],
        }
        yield world
    assert network.violations == []


async def _refused_and_unchanged(
    world: World, case: RouteCase, headers: dict[str, str], status: int, slug: str
) -> httpx.Response:
    before = await world.fingerprint()
    response = await world.call(case, headers)
    assert_problem(response, status, slug)
    assert await world.fingerprint() == before, f"{case.key} changed something"
    return response


# --- the matrix --------------------------------------------------------------------------


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers flattened."""
    return sorted(
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path is not None
        for method in route.methods or ()
    )


class TestRouteCoverage:
    def test_every_protected_route_is_in_the_matrix(self, world: World) -> None:
        """A new route fails here until the matrix covers it (or it is declared public)."""
        routes = _routes(world.app)
        assert len(routes) > len(CASES), "the route listing sees the included routers"
        protected = {
            f"{method} {path}"
            for method, path in routes
            if path not in PUBLIC_PATHS and method != "HEAD"
        }
        assert protected == set(CASES_BY_KEY)


class TestAnonymousSweep:
    async def test_no_route_outside_the_allow_list_answers_without_a_token(
        self, world: World
    ) -> None:
        """Built from `app.routes`, not from the matrix: nothing slips through unlisted."""
        reachable = []
        swept = 0
        for method, template in _routes(world.app):
            if template in PUBLIC_PATHS:
                continue
            path = re.sub(r"\{[^}]+\}", lambda _match: str(uuid.uuid4()), template)
            before = await world.fingerprint()
            response = await world.client.request(method, path, json={})
            swept += 1
            if response.status_code != 401 or await world.fingerprint() != before:
                reachable.append((method, template, response.status_code))
        assert reachable == []
        assert swept == len(CASES)

    async def test_public_routes_answer_without_a_token(self, world: World) -> None:
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert (await world.client.get(path)).status_code == 200, path


@pytest.mark.parametrize("forgery", FORGERY_NAMES)
@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
async def test_forged_token_is_refused(world: World, case: RouteCase, forgery: str) -> None:
    response = await _refused_and_unchanged(
        world, case, forgeries(case.allowed)[forgery], 401, "unauthorized"
    )
    assert response.headers["www-authenticate"].startswith("Bearer")


MISSING_SCOPE_CELLS = [(case, denied) for case in CASES for denied in case.denied]


@pytest.mark.parametrize(
    ("case", "principal"),
    MISSING_SCOPE_CELLS,
    ids=[f"{case.key} as {denied}" for case, denied in MISSING_SCOPE_CELLS],
)
async def test_missing_scope_is_forbidden(world: World, case: RouteCase, principal: str) -> None:
    await _refused_and_unchanged(
        world, case, PRINCIPALS[principal].headers(), 403, "insufficient-scope"
    )


FOREIGN_CASES = [case for case in CASES if case.foreign_slug is not None]


@pytest.mark.parametrize("case", FOREIGN_CASES, ids=[case.key for case in FOREIGN_CASES])
async def test_foreign_object_is_not_found(world: World, case: RouteCase) -> None:
    assert case.foreign_slug is not None
    mallory = PRINCIPALS["foreign-customer"].headers()
    foreign = await _refused_and_unchanged(world, case, mallory, 404, case.foreign_slug)
    # Exactly as if it did not exist: the same answer as for an id nobody has.
    missing = await world.client.request(
        case.method,
        case.path.format(**{name: uuid.uuid4() for name in world.ids}),
        headers=mallory,
        json=None if case.body is None else case.body(),
    )
    assert (missing.status_code, missing.json()["type"], missing.json()["title"]) == (
        foreign.status_code,
        foreign.json()["type"],
        foreign.json()["title"],
    )


def test_the_matrix_size() -> None:
    """The cell count the issue's closing note quotes."""
    assert len(CASES) * len(FORGERY_NAMES) == 200
    assert len(MISSING_SCOPE_CELLS) == 58
    assert len(FOREIGN_CASES) == 9


# --- no owner, no mass assignment -------------------------------------------------------

CUSTOMER_CASES = [case for case in CASES if case.allowed == "customer"]


@pytest.mark.parametrize("case", CUSTOMER_CASES, ids=[case.key for case in CUSTOMER_CASES])
async def test_a_customer_cannot_name_the_owner_in_the_query(world: World, case: RouteCase) -> None:
    """The owner is the token's subject: `?customer_id=` (the pre-token API) is refused,
    even naming the caller, so an old client fails loudly rather than act on a guess."""
    before = await world.fingerprint()
    response = await world.client.request(
        case.method,
        world.path(case.path),
        params={"customer_id": ALICE},
        headers=PRINCIPALS["foreign-customer"].headers(),
        json=None if case.body is None else case.body(),
    )
    assert_problem(response, 422, "invalid-request")
    assert await world.fingerprint() == before


STATE_FIELDS = {
    "customer_id": ALICE,
    "owner_id": ALICE,
    "secret": "whsec_" + "A" * 32,
    "status": "succeeded",
    "enabled": False,
    "id": str(uuid.uuid4()),
}
WRITES = [
    case
    for case in CASES
    if case.key
    in {
        "POST /v1/webhook-endpoints",
        f"PATCH {ENDPOINT}",
        f"POST {ENDPOINT}/rotate-secret",
        "PUT /v1/email-contact",
    }
]
MASS_ASSIGNMENT_CELLS = [(case, name) for case in WRITES for name in STATE_FIELDS]


@pytest.mark.parametrize(
    ("case", "field_name"),
    MASS_ASSIGNMENT_CELLS,
    ids=[f"{case.key} with {name}" for case, name in MASS_ASSIGNMENT_CELLS],
)
async def test_mass_assignment_is_refused(world: World, case: RouteCase, field_name: str) -> None:
    assert case.body is not None
    before = await world.fingerprint()
    response = await world.client.request(
        case.method,
        world.path(case.path),
        headers=PRINCIPALS["customer"].headers(),
        json={**case.body(), field_name: STATE_FIELDS[field_name]},
    )
    body = assert_problem(response, 422, "invalid-request")
    assert any(field_name in issue["location"] for issue in body["errors"]), body  # type: ignore[attr-defined]
    assert await world.fingerprint() == before


class TestOperatorReads:
    """Operators answer "my webhooks stopped arriving": they read any customer's endpoints
    and deliveries (accounts:admin), and change none of them (covered by the 403 cells);
    redelivering is the one thing they do (TestOperatorRedelivery)."""

    async def test_an_operator_reads_a_customer_s_endpoints_and_deliveries(
        self, world: World
    ) -> None:
        operator = PRINCIPALS["operator"].headers()
        listed = await world.client.get(
            "/v1/webhook-endpoints", headers=operator, params={"customer_id": ALICE}
        )
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [world.ids["endpoint_id"]]
        for template in (ENDPOINT, f"{ENDPOINT}/deliveries", DELIVERY):
            response = await world.client.get(world.path(template), headers=operator)
            assert response.status_code == 200, (template, response.text)
        assert (
            "secret" not in (await world.client.get(world.path(ENDPOINT), headers=operator)).json()
        )

    async def test_an_operator_names_the_customer_to_list(self, world: World) -> None:
        response = await world.client.get(
            "/v1/webhook-endpoints", headers=PRINCIPALS["operator"].headers()
        )
        assert_problem(response, 422, "invalid-request")

    async def test_a_service_holding_webhooks_manage_owns_nothing(self, world: World) -> None:
        """Objects belong to customers: a non-customer token cannot create or change them."""
        robot = Principal("robot", PrincipalKind.service, frozenset({Scope.webhooks_manage}))
        for case in (CASES_BY_KEY["POST /v1/webhook-endpoints"], CASES_BY_KEY[f"GET {ENDPOINT}"]):
            await _refused_and_unchanged(world, case, robot.headers(), 403, "insufficient-scope")


class TestOperatorRedelivery:
    """An operator (accounts:admin) may send any customer's finished delivery again; the
    seeded delivery was never attempted (no dispatcher here), so it is still pending: the
    operator gets past authorization and ownership to the delivery's own rule."""

    async def test_an_operator_reaches_a_customer_s_delivery(self, world: World) -> None:
        case = CASES_BY_KEY[f"POST {DELIVERY}/redeliver"]
        operator = PRINCIPALS["operator"].headers()
        await _refused_and_unchanged(world, case, operator, 409, "delivery-pending")

    async def test_an_operator_asking_for_an_unknown_delivery(self, world: World) -> None:
        before = await world.fingerprint()
        response = await world.client.post(
            f"/v1/deliveries/{uuid.uuid4()}/redeliver", headers=PRINCIPALS["operator"].headers()
        )
        assert_problem(response, 404, DELIVERY_GONE)
        assert await world.fingerprint() == before
