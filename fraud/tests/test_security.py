"""Every fraud route answers only the caller it is for, and a refusal changes nothing.

A forged or missing token is 401; a valid token without one of the route's scopes is 403
(customers among them: no customer scope opens any fraud route). The route list comes
from `app.routes`, so a route added without a row in `ROUTES`, or reachable without a
token, fails here. No fraud object is owned by a customer, so there is no foreign-object
cell: customers are refused before any object is looked at.
"""

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from contracts.auth import OPERATOR_SCOPES, WORKER_SCOPES, PrincipalKind, Scope
from fraud.config import Settings
from fraud.main import create_app
from fraud.models import Base
from fraud.tests.support import OPERATOR_ID, Clients, clients, features, score_request
from kit.db import Database
from kit.docs_page import DOCS_ASSETS_PATH
from kit.testing import TestIssuer, assert_problem

# Reachable without a token on purpose: probes and the API's own description.
PUBLIC_ROUTES: Final = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        # Prometheus text for the scraper, no token (docs/decisions/0024-metrics.md).
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        # Swagger UI's script, stylesheet and ours, served for /docs (kit.docs_page).
        ("GET", DOCS_ASSETS_PATH),
    }
)
WORKER_ID: Final = "sagabank-worker"
# Made before the matrix runs, so the routes that read or remove them find them (and a
# refused request that removed one would show in the snapshot).
SCORED_TRANSFER_ID: Final = uuid.UUID("6f1d7a52-3c1e-4b8e-9a0d-2f4b6c8e0a11")
SCORED_REQUEST: Final = score_request(
    transfer_id=str(SCORED_TRANSFER_ID),
    source_account_id="5a3e9c1d-2b7f-4e80-a6d4-1c9f8b7e6d50",
    target_account_id="7e2d4b6a-9c1f-4a38-b5e7-0d3c2a1f9e84",
)
LISTED_ACCOUNT_ID: Final = uuid.UUID("0c9b1e44-7d2a-4f63-8e15-93a7b5d2c6f0")
FORGERY_CELLS: Final = (
    "no-token",
    "malformed",
    "expired",
    "alg-none",
    "hs256-with-public-key",
    "wrong-audience",
    "wrong-issuer",
    "no-exp",
    "unknown-kid",
    "tampered-payload",
)

WORKER: Final = "worker"
OPERATOR: Final = "operator"
_IDENTITIES: Final = {
    WORKER: (WORKER_ID, PrincipalKind.service, WORKER_SCOPES),
    OPERATOR: (OPERATOR_ID, PrincipalKind.operator, OPERATOR_SCOPES),
}


@dataclass(frozen=True)
class Route:
    """One route, called the way its rightful caller calls it.

    `{new}` in the url is a fresh id per request, and `body` makes a fresh body, so that
    the rightful caller's request creates something new each time it is admitted.
    """

    holder: str  # WORKER or OPERATOR: who calls it
    scopes: frozenset[Scope]  # any one of these opens it
    url: str
    admitted_status: int
    body: Callable[[], dict[str, Any]] | None = None
    params: dict[str, str] | None = None

    def refusals(self) -> list[str]:
        """The 403 cells: the holder without the route's scopes, a customer, and the other
        internal principal when none of its scopes opens the route."""
        cells = ["missing-scope", "customer"]
        other = OPERATOR if self.holder == WORKER else WORKER
        if not self.scopes & _IDENTITIES[other][2]:
            cells.append("other-role")
        return cells


def _outcome() -> dict[str, Any]:
    request = score_request()
    return {
        **{key: request[key] for key in ("transfer_id", "source_account_id", "target_account_id")},
        "amount_minor": request["amount_minor"],
        "currency": request["currency"],
        "final_status": "completed",
        "review_decision": None,
        "occurred_at": "2026-11-28T09:00:00Z",
    }


ROUTES: Final = {
    ("POST", "/v1/scores"): Route(
        WORKER, frozenset({Scope.fraud_score}), "/v1/scores", 201, body=score_request
    ),
    ("GET", "/v1/scores/{transfer_id}"): Route(
        WORKER,
        frozenset({Scope.fraud_score, Scope.reviews_write}),
        f"/v1/scores/{SCORED_TRANSFER_ID}",
        200,
    ),
    ("POST", "/v1/outcomes"): Route(
        WORKER, frozenset({Scope.fraud_score}), "/v1/outcomes", 201, body=_outcome
    ),
    ("GET", "/v1/reviews"): Route(OPERATOR, frozenset({Scope.reviews_write}), "/v1/reviews", 200),
    ("GET", "/v1/rulesets/current"): Route(
        OPERATOR,
        frozenset({Scope.reviews_write, Scope.accounts_admin}),
        "/v1/rulesets/current",
        200,
    ),
    ("GET", "/v1/admin/rules/stats"): Route(
        OPERATOR, frozenset({Scope.accounts_admin}), "/v1/admin/rules/stats", 200
    ),
    ("GET", "/v1/admin/accounts/{account_id}/features"): Route(
        OPERATOR,
        frozenset({Scope.accounts_admin}),
        f"/v1/admin/accounts/{LISTED_ACCOUNT_ID}/features",
        200,
        params={"currency": "EUR"},
    ),
    ("GET", "/v1/admin/deny-list"): Route(
        OPERATOR,
        frozenset({Scope.accounts_admin, Scope.audit_read}),
        "/v1/admin/deny-list",
        200,
    ),
    ("PUT", "/v1/admin/deny-list/{account_id}"): Route(
        OPERATOR,
        frozenset({Scope.accounts_admin}),
        "/v1/admin/deny-list/{new}",
        201,
        body=lambda: {"reason": "Security matrix", "listed_by": OPERATOR_ID},
    ),
    ("DELETE", "/v1/admin/deny-list/{account_id}"): Route(
        OPERATOR,
        frozenset({Scope.accounts_admin}),
        f"/v1/admin/deny-list/{LISTED_ACCOUNT_ID}",
        204,
    ),
    ("GET", "/v1/admin/shadow/comparison"): Route(
        OPERATOR, frozenset({Scope.accounts_admin}), "/v1/admin/shadow/comparison", 200
    ),
    ("GET", "/v1/scores/{transfer_id}/shadow"): Route(
        OPERATOR,
        frozenset({Scope.accounts_admin}),
        f"/v1/scores/{SCORED_TRANSFER_ID}/shadow",
        200,
    ),
    ("GET", "/v1/admin/audit-events"): Route(
        OPERATOR, frozenset({Scope.audit_read}), "/v1/admin/audit-events", 200
    ),
    ("GET", "/v1/admin/audit-events/verify"): Route(
        OPERATOR, frozenset({Scope.audit_read}), "/v1/admin/audit-events/verify", 200
    ),
    ("GET", "/v1/admin/audit-events/export"): Route(
        OPERATOR, frozenset({Scope.audit_read}), "/v1/admin/audit-events/export", 200
    ),
}

FORGERY_MATRIX: Final = [
    pytest.param(key, cell, id=f"{key[0]} {key[1]} {cell}")
    for key in ROUTES
    for cell in FORGERY_CELLS
]
REFUSAL_MATRIX: Final = [
    pytest.param(key, cell, id=f"{key[0]} {key[1]} {cell}")
    for key, route in ROUTES.items()
    for cell in route.refusals()
]
# Each scope that opens a route, held alone, opens it.
ADMISSION_MATRIX: Final = [
    pytest.param(key, scope, id=f"{key[0]} {key[1]} {scope.value}")
    for key, route in ROUTES.items()
    for scope in sorted(route.scopes)
]


def _route_keys(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, through included routers too."""
    keys: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        methods = getattr(route, "methods", None) or set()
        assert route.path is not None, f"a route without a path: {route!r}"
        keys.update((method, route.path) for method in methods if method != "HEAD")
    return keys


async def _send(
    client: httpx.AsyncClient, key: tuple[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    route = ROUTES[key]
    return await client.request(
        key[0],
        route.url.replace("{new}", str(uuid.uuid4())),
        json=None if route.body is None else route.body(),
        params=route.params,
        headers=headers,
    )


async def _seed(callers: Clients) -> None:
    """The scored transfer and the listed account the matrix's requests name (idempotent)."""
    scored = await callers.worker.post("/v1/scores", json=SCORED_REQUEST)
    assert scored.status_code in (200, 201), scored.text
    listed = await callers.operator.put(
        f"/v1/admin/deny-list/{LISTED_ACCOUNT_ID}",
        json={"reason": "Seeded for the security matrix", "listed_by": OPERATOR_ID},
    )
    assert listed.status_code in (200, 201), listed.text


async def _snapshot(app: FastAPI) -> dict[str, int]:
    """Rows per table, the audit trail included: any write a refusal made would show."""
    database: Database = app.state.database
    counts = select(
        *(
            select(func.count()).select_from(table).scalar_subquery().label(table.name)
            for table in Base.metadata.sorted_tables
        )
    )
    async with database.engine.connect() as connection:
        row = (await connection.execute(counts)).one()
    return dict(row._mapping)


@dataclass(frozen=True)
class Matrix:
    app: FastAPI
    callers: Clients
    issuer: TestIssuer
    forgeries: dict[str, dict[str, dict[str, str]]]  # holder -> cell -> headers


@pytest.fixture(scope="module")
async def matrix(module_database_url: str, issuer: TestIssuer) -> AsyncIterator[Matrix]:
    """One app and database for the whole module: every refused cell must change nothing,
    so the cells can share them (a database per cell would cost more than the cells)."""
    app = create_app(
        Settings(database_url=module_database_url, log_json=True, log_level="warning"),
        token_verifier=issuer.verifier,
    )
    async with clients(app, issuer) as callers:
        await _seed(callers)
        # Made once: each set of forgeries generates an RSA key (the unknown-kid cell).
        forgeries = {
            holder: issuer.forgeries(*identity) for holder, identity in _IDENTITIES.items()
        }
        yield Matrix(app=app, callers=callers, issuer=issuer, forgeries=forgeries)


def _refused_headers(issuer: TestIssuer, route: Route, cell: str) -> dict[str, str]:
    subject, kind, scopes = _IDENTITIES[route.holder]
    if cell == "missing-scope":
        return issuer.headers(subject, kind, {str(scope) for scope in scopes - route.scopes})
    if cell == "customer":
        return issuer.customer(str(uuid.uuid4()))
    assert cell == "other-role", cell
    return issuer.worker() if route.holder == OPERATOR else issuer.operator(OPERATOR_ID)


class TestEveryRoute:
    def test_every_route_is_in_the_matrix(self, matrix: Matrix) -> None:
        """A route added without a row in ROUTES, and not deliberately public, fails here."""
        routes = _route_keys(matrix.app)
        assert routes - PUBLIC_ROUTES == set(ROUTES)
        assert routes >= PUBLIC_ROUTES

    def test_the_forgeries_are_the_kits(self, issuer: TestIssuer) -> None:
        # A new attack added to TestIssuer must join the matrix, not be skipped silently.
        assert set(issuer.forgeries(WORKER_ID, PrincipalKind.service, WORKER_SCOPES)) == set(
            FORGERY_CELLS
        )

    async def test_no_route_outside_the_public_ones_answers_without_a_token(
        self, matrix: Matrix
    ) -> None:
        """Probes every route `app.routes` lists, with made-up path ids, not the matrix's."""
        before = await _snapshot(matrix.app)
        for method, path in sorted(_route_keys(matrix.app) - PUBLIC_ROUTES):
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            response = await matrix.callers.anonymous.request(method, url)
            assert_problem(response, 401, "unauthorized")
        assert await _snapshot(matrix.app) == before

    async def test_public_routes_answer_without_a_token(self, matrix: Matrix) -> None:
        for _method, path in sorted(PUBLIC_ROUTES):
            # The one public path with a parameter: one of the assets /docs loads.
            response = await matrix.callers.anonymous.get(path.format(name="swagger-ui.css"))
            assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize(("key", "cell"), FORGERY_MATRIX)
async def test_forged_or_missing_token_is_unauthorized(
    matrix: Matrix, key: tuple[str, str], cell: str
) -> None:
    before = await _snapshot(matrix.app)
    headers = matrix.forgeries[ROUTES[key].holder][cell]
    response = await _send(matrix.callers.anonymous, key, headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await _snapshot(matrix.app) == before


@pytest.mark.parametrize(("key", "cell"), REFUSAL_MATRIX)
async def test_caller_without_the_scope_is_forbidden(
    matrix: Matrix, key: tuple[str, str], cell: str
) -> None:
    before = await _snapshot(matrix.app)
    headers = _refused_headers(matrix.issuer, ROUTES[key], cell)
    response = await _send(matrix.callers.anonymous, key, headers)
    assert_problem(response, 403, "insufficient-scope")
    assert await _snapshot(matrix.app) == before


@pytest.mark.parametrize(("key", "scope"), ADMISSION_MATRIX)
async def test_rightful_caller_is_admitted(
    matrix: Matrix, key: tuple[str, str], scope: Scope
) -> None:
    """The matrix's requests are valid: with the scope alone, each one succeeds (so the
    refusals above are the token's doing, not the request's)."""
    subject, kind = (
        (OPERATOR_ID, PrincipalKind.operator)
        if scope in OPERATOR_SCOPES
        else (WORKER_ID, PrincipalKind.service)
    )
    headers = matrix.issuer.headers(subject, kind, {str(scope)})
    try:
        response = await _send(matrix.callers.anonymous, key, headers)
        assert response.status_code == ROUTES[key].admitted_status, response.text
    finally:
        await _seed(matrix.callers)  # the DELETE row took the listed account off


class TestMassAssignment:
    """Bodies that change state refuse fields the caller may not set (422, nothing written)."""

    @pytest.mark.parametrize(
        "field",
        [
            {"fraud_score": 0},
            {"score": 0},
            {"decision": "approve"},
            {"status": "completed"},
            {"balance": 1_000_00},
            {"ruleset_version": "lenient-1"},
            {"created_at": "2026-01-01T00:00:00Z"},
        ],
        ids=lambda field: next(iter(field)),
    )
    async def test_score_request(self, matrix: Matrix, field: dict[str, object]) -> None:
        worker = matrix.callers.worker
        before = await _snapshot(matrix.app)
        request = score_request(amount_minor=50_000_00, **field)
        assert_problem(await worker.post("/v1/scores", json=request), 422, "invalid-request")
        fetched = await worker.get(f"/v1/scores/{request['transfer_id']}")
        assert_problem(fetched, 404, "score-not-found")
        assert await _snapshot(matrix.app) == before

    @pytest.mark.parametrize(
        "field",
        [
            {"account_id": str(uuid.uuid4())},
            {"listed_at": "2020-01-01T00:00:00Z"},
            {"status": "active"},
            {"owner_id": str(uuid.uuid4())},
            {"customer_id": str(uuid.uuid4())},
        ],
        ids=lambda field: next(iter(field)),
    )
    async def test_deny_list_entry(self, matrix: Matrix, field: dict[str, object]) -> None:
        operator = matrix.callers.operator
        before = await _snapshot(matrix.app)
        account_id = str(uuid.uuid4())
        body = {"reason": "Mule account", "listed_by": OPERATOR_ID, **field}
        response = await operator.put(f"/v1/admin/deny-list/{account_id}", json=body)
        assert_problem(response, 422, "invalid-request")
        assert (await features(operator, account_id))["denied"] is False
        assert await _snapshot(matrix.app) == before

    @pytest.mark.parametrize(
        "field",
        [{"balance": 0}, {"fraud_score": 0}, {"status": "completed"}, {"recorded_at": "x"}],
        ids=lambda field: next(iter(field)),
    )
    async def test_outcome_report(self, matrix: Matrix, field: dict[str, object]) -> None:
        before = await _snapshot(matrix.app)
        response = await matrix.callers.worker.post("/v1/outcomes", json={**_outcome(), **field})
        assert_problem(response, 422, "invalid-request")
        assert await _snapshot(matrix.app) == before
