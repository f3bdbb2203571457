"""The security matrix (issue 5): every route of the service against every forged token,
a token without the route's scope, and a foreign customer; each refused call changes
nothing.

The route list comes from the app itself, so a route added without a case here fails
`test_every_route_is_in_the_matrix`, and one reachable without a token fails
`test_no_route_answers_anonymously` whatever its case says.
"""

import contextlib
import functools
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from temporalio.client import Client
from temporalio.worker import Worker

from contracts.audit import AUDIT_EVENTS_PATH, AUDIT_EXPORT_PATH, AUDIT_VERIFY_PATH
from contracts.auth import CUSTOMER_SCOPES, OPERATOR_SCOPES, WORKER_SCOPES, PrincipalKind, Scope
from contracts.reversals import REVERSALS_PATH, TRANSFER_REVERSALS_PATH
from contracts.secrets import SECRETS_RESEAL_PATH
from contracts.standing_orders import (
    STANDING_ORDER_OCCURRENCES_INTERNAL_PATH,
    STANDING_ORDER_OUTCOMES_INTERNAL_PATH,
    STANDING_ORDERS_PATH,
)
from contracts.transfers import (
    CALLBACK_CLIENTS_PATH,
    CALLBACK_CONFIRMATIONS_PATH,
    TRANSFER_STEP_BATCH_PATH,
    TRANSFER_STEPS_PATH,
    TRANSFERS_BATCH_PATH,
    TRANSFERS_PATH,
)
from kit.docs_page import DOCS_ASSETS_PATH
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.tests.standin import StandInTransferWorkflow
from transactions.tests.support import (
    ALICE,
    BOB,
    ISSUER,
    OPERATOR,
    WORKER,
    FakeAccounts,
    customer,
    fingerprint,
    key_header,
    report,
    transfer_body,
    worker,
    workflow_handle,
)

# Reachable without a bearer token, on purpose: health, the API description, and the
# confirmation callback (verified by its Standard Webhooks signature instead).
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
        ("POST", CALLBACK_CONFIRMATIONS_PATH),
    }
)
ALL_SCOPES: Final = frozenset(Scope)
_SUBJECTS: Final = {
    PrincipalKind.customer: ALICE,
    PrincipalKind.operator: OPERATOR,
    PrincipalKind.service: WORKER,
}
_SCOPES_OF: Final = {
    PrincipalKind.customer: CUSTOMER_SCOPES,
    PrincipalKind.operator: OPERATOR_SCOPES,
    PrincipalKind.service: WORKER_SCOPES,
}


@dataclass(frozen=True)
class Seed:
    """What exists before each cell: Alice's transfer, waiting in review, from her account."""

    transfer_id: str
    source_account_id: str
    # Alice's standing order (from the same account) and its one occurrence's time.
    standing_order_id: str
    scheduled_at: str


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str
    # The scopes the route demands and the kind of caller that legitimately has them.
    scopes: frozenset[Scope]
    caller: PrincipalKind
    # The request a legitimate caller would send, given the seed.
    url: Callable[[Seed], str]
    body: Callable[[Seed], Any] | None = None
    headers: Callable[[], dict[str, str]] = dict
    # How the route answers a foreign customer (Bob) who sends the same request about
    # Alice's object; None where no customer-owned object is involved.
    foreign: Callable[[httpx.Response], None] | None = None
    # The statuses a legitimate caller gets (proving the request passes auth).
    allowed: frozenset[int] = frozenset({200})

    @property
    def route(self) -> tuple[str, str]:
        return self.method, self.path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _transfer_url(seed: Seed) -> str:
    return f"{TRANSFERS_PATH}/{seed.transfer_id}"


def _from_alices_account(seed: Seed) -> dict[str, Any]:
    return transfer_body(source_account_id=seed.source_account_id)


def _answers_404(slug: str) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        assert_problem(response, 404, slug)

    return check


def _batch_item_answers_404(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["status"] == 404, result
    assert result["problem"]["type"] == "urn:sagabank:problem:account-not-found"
    assert result["transfer"] is None


def _lists_nothing(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


TRANSFER_CASES: Final = (
    RouteCase(
        "POST",
        TRANSFERS_PATH,
        frozenset({Scope.transfers_write}),
        PrincipalKind.customer,
        url=lambda seed: TRANSFERS_PATH,
        body=_from_alices_account,
        headers=key_header,
        foreign=_answers_404("account-not-found"),
        allowed=frozenset({202}),
    ),
    RouteCase(
        "POST",
        TRANSFERS_BATCH_PATH,
        frozenset({Scope.transfers_write}),
        PrincipalKind.customer,
        url=lambda seed: TRANSFERS_BATCH_PATH,
        body=lambda seed: {
            "items": [{**_from_alices_account(seed), "idempotency_key": f"k-{uuid.uuid4()}"}]
        },
        foreign=_batch_item_answers_404,
    ),
    RouteCase(
        "GET",
        f"{TRANSFERS_PATH}/{{transfer_id}}",
        frozenset({Scope.transfers_read}),
        PrincipalKind.customer,
        url=_transfer_url,
        foreign=_answers_404("transfer-not-found"),
    ),
    RouteCase(
        "GET",
        TRANSFERS_PATH,
        frozenset({Scope.transfers_read}),
        PrincipalKind.customer,
        url=lambda seed: TRANSFERS_PATH,
        foreign=_lists_nothing,
    ),
    RouteCase(
        "POST",
        f"{TRANSFERS_PATH}/{{transfer_id}}/cancel",
        frozenset({Scope.transfers_write}),
        PrincipalKind.customer,
        url=lambda seed: f"{_transfer_url(seed)}/cancel",
        body=lambda seed: {"reason": "Wrong payee"},
        foreign=_answers_404("transfer-not-found"),
        allowed=frozenset({202}),
    ),
    # The seed is in review, not completed: a caller past auth learns it cannot be reversed.
    RouteCase(
        "POST",
        TRANSFER_REVERSALS_PATH,
        frozenset({Scope.transfers_write, Scope.transfers_reverse}),
        PrincipalKind.customer,
        url=lambda seed: TRANSFER_REVERSALS_PATH.format(transfer_id=seed.transfer_id),
        body=lambda seed: {"reason": "goods returned"},
        headers=key_header,
        foreign=_answers_404("transfer-not-found"),
        allowed=frozenset({409}),
    ),
    RouteCase(
        "GET",
        TRANSFER_REVERSALS_PATH,
        frozenset({Scope.transfers_read}),
        PrincipalKind.customer,
        url=lambda seed: TRANSFER_REVERSALS_PATH.format(transfer_id=seed.transfer_id),
        foreign=_answers_404("transfer-not-found"),
    ),
    # The seed has no reversal: a caller past auth learns that its id names none.
    RouteCase(
        "GET",
        f"{REVERSALS_PATH}/{{reversal_id}}",
        frozenset({Scope.transfers_read}),
        PrincipalKind.customer,
        url=lambda seed: f"{REVERSALS_PATH}/{seed.transfer_id}",
        allowed=frozenset({404}),
    ),
    RouteCase(
        "POST",
        TRANSFER_STEPS_PATH,
        frozenset({Scope.transfers_internal}),
        PrincipalKind.service,
        url=lambda seed: TRANSFER_STEPS_PATH.format(transfer_id=seed.transfer_id),
        body=lambda seed: {
            "step": "review",
            "outcome": "approved",
            "status": "pending",
            "version": 4,
            "occurred_at": "2026-11-28T10:00:00+00:00",
        },
    ),
    RouteCase(
        "POST",
        TRANSFER_STEP_BATCH_PATH,
        frozenset({Scope.transfers_internal}),
        PrincipalKind.service,
        url=lambda seed: TRANSFER_STEP_BATCH_PATH.format(transfer_id=seed.transfer_id),
        body=lambda seed: {
            "records": [
                {
                    "step": "review",
                    "outcome": "approved",
                    "status": "pending",
                    "version": 4,
                    "occurred_at": "2026-11-28T10:00:00+00:00",
                }
            ]
        },
    ),
    RouteCase(
        "POST",
        "/v1/admin/transfers/{transfer_id}/review",
        frozenset({Scope.reviews_write}),
        PrincipalKind.operator,
        url=lambda seed: f"/v1/admin/transfers/{seed.transfer_id}/review",
        body=lambda seed: {"decision": "approve"},
        allowed=frozenset({202}),
    ),
    RouteCase(
        "POST",
        CALLBACK_CLIENTS_PATH,
        frozenset({Scope.accounts_admin}),
        PrincipalKind.operator,
        url=lambda seed: CALLBACK_CLIENTS_PATH,
        body=lambda seed: {"name": "rail-x", "account_ids": [seed.source_account_id]},
        allowed=frozenset({201}),
    ),
    RouteCase(
        "GET",
        AUDIT_EVENTS_PATH,
        frozenset({Scope.audit_read}),
        PrincipalKind.operator,
        url=lambda seed: AUDIT_EVENTS_PATH,
    ),
    RouteCase(
        "GET",
        AUDIT_VERIFY_PATH,
        frozenset({Scope.audit_read}),
        PrincipalKind.operator,
        url=lambda seed: AUDIT_VERIFY_PATH,
    ),
    RouteCase(
        "GET",
        AUDIT_EXPORT_PATH,
        frozenset({Scope.audit_read}),
        PrincipalKind.operator,
        url=lambda seed: AUDIT_EXPORT_PATH,
    ),
    RouteCase(
        "POST",
        SECRETS_RESEAL_PATH,
        frozenset({Scope.secrets_rotate}),
        PrincipalKind.operator,
        url=lambda seed: SECRETS_RESEAL_PATH,
        body=lambda seed: {"limit": 10},
    ),
)
_ORDER: Final = f"{STANDING_ORDERS_PATH}/{{standing_order_id}}"


def _order_url(seed: Seed, tail: str = "") -> str:
    return f"{STANDING_ORDERS_PATH}/{seed.standing_order_id}{tail}"


def _order_body(seed: Seed) -> dict[str, Any]:
    return {
        "source_account_id": seed.source_account_id,
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 100_00,
        "currency": "EUR",
        "interval": "P1M",
        "start_at": "2031-01-15T09:00:00+00:00",
    }


def _order_case(method: str, tail: str, scope: Scope) -> RouteCase:
    """A route on Alice's standing order; Bob gets 404 as for a missing one."""
    return RouteCase(
        method,
        f"{_ORDER}{tail}",
        frozenset({scope}),
        PrincipalKind.customer,
        url=lambda seed: _order_url(seed, tail),
        foreign=_answers_404("standing-order-not-found"),
    )


STANDING_ORDER_CASES: Final = (
    RouteCase(
        "POST",
        STANDING_ORDERS_PATH,
        frozenset({Scope.transfers_write}),
        PrincipalKind.customer,
        url=lambda seed: STANDING_ORDERS_PATH,
        body=_order_body,
        headers=key_header,
        foreign=_answers_404("account-not-found"),
        allowed=frozenset({201}),
    ),
    RouteCase(
        "GET",
        STANDING_ORDERS_PATH,
        frozenset({Scope.transfers_read}),
        PrincipalKind.customer,
        url=lambda seed: STANDING_ORDERS_PATH,
        foreign=_lists_nothing,
    ),
    _order_case("GET", "", Scope.transfers_read),
    _order_case("GET", "/occurrences", Scope.transfers_read),
    _order_case("POST", "/pause", Scope.transfers_write),
    _order_case("POST", "/resume", Scope.transfers_write),
    _order_case("DELETE", "", Scope.transfers_write),
    RouteCase(
        "POST",
        STANDING_ORDER_OCCURRENCES_INTERNAL_PATH,
        frozenset({Scope.transfers_internal}),
        PrincipalKind.service,
        url=lambda seed: STANDING_ORDER_OCCURRENCES_INTERNAL_PATH.format(
            standing_order_id=seed.standing_order_id
        ),
        body=lambda seed: {"scheduled_at": seed.scheduled_at},
    ),
    RouteCase(
        "POST",
        STANDING_ORDER_OUTCOMES_INTERNAL_PATH,
        frozenset({Scope.transfers_internal}),
        PrincipalKind.service,
        url=lambda seed: STANDING_ORDER_OUTCOMES_INTERNAL_PATH.format(
            standing_order_id=seed.standing_order_id
        ),
        body=lambda seed: {"scheduled_at": seed.scheduled_at, "status": "completed"},
    ),
)
CASES: Final = (*TRANSFER_CASES, *STANDING_ORDER_CASES)
FORGERIES: Final = (
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


@functools.cache
def _forgeries(kind: PrincipalKind) -> dict[str, dict[str, str]]:
    """The forged headers for the legitimate caller of a kind (made once: each set mints a
    key pair of its own for the unknown-kid cell)."""
    forged = ISSUER.forgeries(_SUBJECTS[kind], kind, _SCOPES_OF[kind])
    assert set(forged) == set(FORGERIES), "the kit's forgery set changed; update FORGERIES"
    return forged


def _routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers; HEAD rides along with GET."""
    routes: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None
        for method in route.methods or ():
            if method != "HEAD":
                routes.add((method, route.path))
    return routes


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A cancel that slipped past the checks would wait this long for the saga's answer.
    return settings.model_copy(update={"cancel_timeout_seconds": 1.0})


@pytest.fixture
async def bare(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no token unless a request carries one (the app is running
    already, started by `client`)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as bare:
        yield bare


@pytest.fixture
async def seed(client: httpx.AsyncClient) -> Seed:
    body = transfer_body()
    created = await client.post(TRANSFERS_PATH, json=body, headers=key_header())
    assert created.status_code == 202, created.text
    transfer_id = created.json()["id"]
    reported = await report(
        client, transfer_id, step="score", outcome="review", status="in_review", version=3
    )
    assert reported.status_code == 200, reported.text
    order_body = {**_order_body(Seed(transfer_id, body["source_account_id"], "", ""))}
    order = await client.post(STANDING_ORDERS_PATH, json=order_body, headers=key_header())
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    occurrence = await client.post(
        STANDING_ORDER_OCCURRENCES_INTERNAL_PATH.format(standing_order_id=order_id),
        json={"scheduled_at": order_body["start_at"]},
        headers=worker(),
    )
    assert occurrence.status_code == 200, occurrence.text
    return Seed(
        transfer_id=transfer_id,
        source_account_id=body["source_account_id"],
        standing_order_id=order_id,
        scheduled_at=order_body["start_at"],
    )


async def _send(
    client: httpx.AsyncClient, case: RouteCase, seed: Seed, authorization: dict[str, str]
) -> httpx.Response:
    body = None if case.body is None else case.body(seed)
    return await client.request(
        case.method, case.url(seed), json=body, headers={**case.headers(), **authorization}
    )


async def _history_length(temporal: Client, seed: Seed) -> int:
    """Events in the seed's workflow: a signal or an update that got through adds some."""
    history = await workflow_handle(temporal, seed.transfer_id).fetch_history()
    return len(history.events)


def _legitimate(case: RouteCase) -> dict[str, str]:
    return ISSUER.headers(_SUBJECTS[case.caller], case.caller, _SCOPES_OF[case.caller])


class TestRouteList:
    def test_every_route_is_in_the_matrix(self, app: FastAPI) -> None:
        protected = _routes_of(app) - PUBLIC_ROUTES
        assert protected == {case.route for case in CASES}

    def test_public_routes_exist(self, app: FastAPI) -> None:
        # A public route that disappears from the app must leave the allow-list too.
        assert _routes_of(app) >= PUBLIC_ROUTES

    async def test_no_route_answers_anonymously(
        self, app: FastAPI, bare: httpx.AsyncClient
    ) -> None:
        for method, path in sorted(_routes_of(app) - PUBLIC_ROUTES):
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            response = await bare.request(method, url, json={})
            assert_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")


class TestSecurityMatrix:
    @pytest.mark.parametrize("case", CASES, ids=str)
    async def test_forged_tokens(
        self, app: FastAPI, bare: httpx.AsyncClient, temporal: Client, seed: Seed, case: RouteCase
    ) -> None:
        # The ten cells of a route run in one test (one database, one seed): a cell that
        # changed anything would leave the fingerprint changed, since nothing here undoes.
        before, events_before = await fingerprint(app), await _history_length(temporal, seed)
        answers: dict[str, tuple[int, object]] = {}
        for forgery in FORGERIES:
            response = await _send(bare, case, seed, _forgeries(case.caller)[forgery])
            problem = response.json()
            answers[forgery] = (response.status_code, problem.get("type"))
            assert response.headers["content-type"].startswith("application/problem+json")
        assert answers == dict.fromkeys(FORGERIES, (401, "urn:sagabank:problem:unauthorized"))
        assert await fingerprint(app) == before
        assert await _history_length(temporal, seed) == events_before

    @pytest.mark.parametrize("case", CASES, ids=str)
    async def test_missing_scope(
        self, app: FastAPI, bare: httpx.AsyncClient, temporal: Client, seed: Seed, case: RouteCase
    ) -> None:
        # Every scope there is except the route's own: only that one is missing.
        headers = ISSUER.headers(_SUBJECTS[case.caller], case.caller, ALL_SCOPES - case.scopes)
        before, events_before = await fingerprint(app), await _history_length(temporal, seed)

        response = await _send(bare, case, seed, headers)

        assert_problem(response, 403, "insufficient-scope")
        assert await fingerprint(app) == before
        assert await _history_length(temporal, seed) == events_before

    @pytest.mark.parametrize("case", [case for case in CASES if case.foreign], ids=str)
    async def test_foreign_customer(
        self,
        app: FastAPI,
        bare: httpx.AsyncClient,
        temporal: Client,
        accounts: FakeAccounts,
        seed: Seed,
        case: RouteCase,
    ) -> None:
        assert case.foreign is not None
        accounts.own(seed.source_account_id, ALICE)
        before, events_before = await fingerprint(app), await _history_length(temporal, seed)

        response = await _send(bare, case, seed, customer(BOB))

        case.foreign(response)
        assert await fingerprint(app) == before
        assert await _history_length(temporal, seed) == events_before

    @pytest.mark.parametrize("case", CASES, ids=str)
    async def test_legitimate_caller(
        self,
        bare: httpx.AsyncClient,
        temporal: Client,
        task_queue: str,
        seed: Seed,
        case: RouteCase,
    ) -> None:
        # The control: the very request the cells send passes with a proper token, so
        # their refusals come from the token alone. (A stand-in saga answers the cancel.)
        saga = (
            Worker(temporal, task_queue=task_queue, workflows=[StandInTransferWorkflow])
            if case.path.endswith("/cancel")
            else contextlib.nullcontext()
        )
        async with saga:
            response = await _send(bare, case, seed, _legitimate(case))
        assert response.status_code in case.allowed, response.text


class TestAuditEndpoints:
    @pytest.mark.parametrize("path", [AUDIT_EVENTS_PATH, AUDIT_VERIFY_PATH, AUDIT_EXPORT_PATH])
    @pytest.mark.parametrize("caller", ["customer", "worker"])
    async def test_only_audit_readers(
        self, bare: httpx.AsyncClient, path: str, caller: str
    ) -> None:
        headers = customer() if caller == "customer" else ISSUER.worker()
        assert_problem(await bare.get(path, headers=headers), 403, "insufficient-scope")


class TestMassAssignment:
    """Fields the service decides (status, owner, fraud score, balances) cannot be sent."""

    @pytest.mark.parametrize(
        "field",
        [
            {"status": "completed"},
            {"fraud_score": 0},
            {"customer_id": BOB},
            {"owner_id": BOB},
            {"balance": 10**9},
            {"hold_id": str(uuid.uuid4())},
        ],
        ids=lambda field: next(iter(field)),
    )
    async def test_transfer_body(
        self, app: FastAPI, client: httpx.AsyncClient, field: dict[str, Any]
    ) -> None:
        before = await fingerprint(app)
        single = await client.post(
            TRANSFERS_PATH, json={**transfer_body(), **field}, headers=key_header()
        )
        errors = assert_problem(single, 422, "invalid-request")["errors"]
        assert isinstance(errors, list)
        assert [error["location"] for error in errors] == [["body", next(iter(field))]]
        batch = await client.post(
            TRANSFERS_BATCH_PATH,
            json={"items": [{**transfer_body(), **field, "idempotency_key": "k-1"}]},
        )
        assert batch.status_code == 200, batch.text
        (result,) = batch.json()["results"]
        assert result["status"] == 422
        assert result["problem"]["type"] == "urn:sagabank:problem:invalid-request"
        assert await fingerprint(app) == before

    async def test_cancel_body(
        self, app: FastAPI, client: httpx.AsyncClient, temporal: Client, seed: Seed
    ) -> None:
        before, events_before = await fingerprint(app), await _history_length(temporal, seed)
        response = await client.post(f"{_transfer_url(seed)}/cancel", json={"status": "cancelled"})
        assert_problem(response, 422, "invalid-request")
        assert await fingerprint(app) == before
        assert await _history_length(temporal, seed) == events_before


def test_cell_count() -> None:
    """The closing note quotes this: forgeries x routes + missing scope + foreign cells."""
    forged = len(FORGERIES) * len(CASES)
    foreign = sum(1 for case in CASES if case.foreign)
    assert (len(FORGERIES), len(CASES), foreign) == (10, 25, 14)
    assert forged + len(CASES) + foreign == 289
