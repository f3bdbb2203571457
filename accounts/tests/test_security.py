"""Who may call what: every route of the service against forged tokens, missing scopes,
the wrong kind of caller and a foreign customer's objects. Every refused call changes
nothing. The route list comes from the app itself, so a new route that nobody put in
`ROUTES` (or in the short list of public ones) fails `test_every_route_is_covered`.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from accounts.config import Settings
from accounts.tests.conftest import STAFF_SECRETS_KEYS
from accounts.tests.helpers import Bank, Clock, accounts_app, raw_connection
from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    WORKER_SCOPES,
    PrincipalKind,
    Scope,
)
from kit.docs_page import DOCS_ASSETS_PATH
from kit.testing import TestIssuer, app_client, assert_problem

CUSTOMER_A = "customer-a"
CUSTOMER_B = "customer-b"
OPERATOR = "operator-1"
WORKER = "sagabank-worker"

# Reachable without a token, on purpose; everything else needs one.
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        # Prometheus text for the scraper, no token (docs/decisions/0024-metrics.md).
        ("GET", "/metrics"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/v1/oauth/token"),
        ("POST", "/v1/customers"),
        # RFC 8414 metadata, and RFC 7009 revocation (holding the token is the proof).
        ("GET", "/.well-known/oauth-authorization-server"),
        ("POST", "/v1/oauth/revoke"),
        # The sign-in page, its form's post (its own CSRF token) and its stylesheet.
        ("GET", "/v1/oauth/authorize"),
        ("POST", "/v1/oauth/authorize"),
        ("GET", "/v1/oauth/sign-in.css"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        # Swagger UI's script, stylesheet and ours, served for /docs (kit.docs_page).
        ("GET", DOCS_ASSETS_PATH),
    }
)
# Needing no scope but a staff member's own token (a person's, `staff:<id>`): any other
# valid token is refused with 403 (TestStaffTokenRoutes).
STAFF_TOKEN_ROUTES = frozenset({("GET", "/v1/staff/me")})


@dataclass(frozen=True)
class World:
    """Objects the requests name: customer A's funded account, an empty one and a frozen
    one (so that closing and unfreezing would succeed), B's account, a hold from A to B."""

    account_a: str
    account_b: str
    empty_account: str
    frozen_account: str
    hold_id: str
    # A staff member, enabled: disabling them would change something.
    staff_email: str


@dataclass(frozen=True)
class Caller:
    subject: str
    kind: PrincipalKind
    scopes: frozenset[Scope]

    def without(self, scope: Scope) -> "Caller":
        assert scope in self.scopes, f"{self.subject} has no {scope} to take away"
        return Caller(self.subject, self.kind, self.scopes - {scope})


CUSTOMER = Caller(CUSTOMER_A, PrincipalKind.customer, frozenset(CUSTOMER_SCOPES))
FOREIGN_CUSTOMER = Caller(CUSTOMER_B, PrincipalKind.customer, frozenset(CUSTOMER_SCOPES))
STAFF = Caller(OPERATOR, PrincipalKind.operator, frozenset(OPERATOR_SCOPES))
SAGA = Caller(WORKER, PrincipalKind.service, frozenset(WORKER_SCOPES))

Build = Callable[[World], tuple[str, dict[str, Any] | None, dict[str, str]]]


def _request(path: str, body: dict[str, Any] | None = None, **headers: str) -> Build:
    """A request whose `{a}`, `{b}` and `{hold}` name the world's objects; fresh ids and
    Idempotency-Keys each time, so that with a valid token it would change something."""

    def build(world: World) -> tuple[str, dict[str, Any] | None, dict[str, str]]:
        names = {
            "a": world.account_a,
            "b": world.account_b,
            "empty": world.empty_account,
            "frozen": world.frozen_account,
            "hold": world.hold_id,
            "saga_reference": f"transfer:{uuid.uuid4()}",
            "staff_email": world.staff_email,
            "fresh_email": f"staff-{uuid.uuid4().hex[:12]}@staff.example",
        }
        filled = _fill(body, names) if body is not None else None
        fresh = {name: str(uuid.uuid4()) for name in headers}
        return path.format(**names), filled, fresh

    return build


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return str(uuid.uuid4()) if value == "{new}" else value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, names) for item in value]
    return value


@dataclass(frozen=True)
class RouteSpec:
    caller: Caller
    # The scope the caller needs; taken away, the call answers 403.
    scope: Scope
    build: Build
    # Other callers who must be refused, with the status: the wrong kind (403) or a
    # customer who does not own the object (404).
    refused: dict[str, tuple[Caller, int]] = field(default_factory=dict)


_TRANSFER = {
    "id": "{new}",
    "kind": "single_phase",
    "debit_account_id": "{a}",
    "credit_account_id": "{b}",
    "amount_minor": 1,
    "currency": "EUR",
}
# What the saga's worker may write: a customer transfer's hold (staff may write any).
_SAGA_HOLD = {
    **_TRANSFER,
    "kind": "pending",
    "timeout_seconds": 60,
    "reference": "{saga_reference}",
}
_STAFF_ONLY = {"customer": (CUSTOMER, 403)}
_SAGA_ONLY = {"customer": (CUSTOMER, 403), "operator": (STAFF, 403)}
_SAGA_OR_STAFF = {"customer": (CUSTOMER, 403)}
_OWNED = {
    "foreign-customer": (FOREIGN_CUSTOMER, 404),
    "operator-without-admin": (STAFF.without(Scope.accounts_admin), 403),
}

ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("POST", "/v1/accounts"): RouteSpec(
        CUSTOMER, Scope.accounts_write, _request("/v1/accounts", {"currency": "EUR"})
    ),
    ("GET", "/v1/accounts"): RouteSpec(
        CUSTOMER,
        Scope.accounts_read,
        _request("/v1/accounts"),
        {"operator-without-admin": (STAFF.without(Scope.accounts_admin), 403)},
    ),
    ("GET", "/v1/accounts/{account_id}"): RouteSpec(
        CUSTOMER, Scope.accounts_read, _request("/v1/accounts/{a}"), _OWNED
    ),
    ("GET", "/v1/accounts/{account_id}/entries"): RouteSpec(
        CUSTOMER, Scope.accounts_read, _request("/v1/accounts/{a}/entries"), _OWNED
    ),
    **{
        ("POST", f"/v1/accounts/{{account_id}}/{action}"): RouteSpec(
            STAFF,
            Scope.accounts_admin,
            _request(f"/v1/accounts/{{{target}}}/{action}"),
            _STAFF_ONLY,
        )
        for action, target in (("freeze", "a"), ("unfreeze", "frozen"), ("close", "empty"))
    },
    ("PATCH", "/v1/accounts/{account_id}/limits"): RouteSpec(
        STAFF,
        Scope.accounts_admin,
        _request("/v1/accounts/{a}/limits", {"max_transfer_amount_minor": 5}),
        _STAFF_ONLY,
    ),
    **{
        ("POST", f"/v1/accounts/{{account_id}}/{direction}"): RouteSpec(
            STAFF,
            Scope.accounts_admin,
            _request(
                f"/v1/accounts/{{a}}/{direction}",
                {"amount_minor": 1, "currency": "EUR"},
                **{"Idempotency-Key": ""},
            ),
            _STAFF_ONLY,
        )
        for direction in ("deposits", "withdrawals")
    },
    ("POST", "/v1/ledger/transfers"): RouteSpec(
        SAGA, Scope.ledger_write, _request("/v1/ledger/transfers", _SAGA_HOLD), _SAGA_OR_STAFF
    ),
    ("POST", "/v1/ledger/transfers/batch"): RouteSpec(
        SAGA,
        Scope.ledger_write,
        _request("/v1/ledger/transfers/batch", {"transfers": [_SAGA_HOLD]}),
        _SAGA_OR_STAFF,
    ),
    ("GET", "/v1/ledger/transfers/{transfer_id}"): RouteSpec(
        STAFF, Scope.accounts_admin, _request("/v1/ledger/transfers/{hold}"), _STAFF_ONLY
    ),
    ("POST", "/v1/ledger/validations"): RouteSpec(
        SAGA,
        Scope.ledger_write,
        _request(
            "/v1/ledger/validations",
            {
                "transfer_id": "{new}",
                "source_account_id": "{a}",
                "target_account_id": "{b}",
                "amount_minor": 1,
                "currency": "EUR",
            },
        ),
        _SAGA_ONLY,
    ),
    ("GET", "/v1/admin/ledger/invariants"): RouteSpec(
        STAFF, Scope.accounts_admin, _request("/v1/admin/ledger/invariants"), _STAFF_ONLY
    ),
    ("POST", "/v1/admin/staff"): RouteSpec(
        STAFF,
        Scope.staff_manage,
        _request(
            "/v1/admin/staff",
            {"email": "{fresh_email}", "role": "reviewer", "password": "{new}"},
        ),
        _STAFF_ONLY,
    ),
    ("POST", "/v1/admin/staff/disable"): RouteSpec(
        STAFF,
        Scope.staff_manage,
        _request("/v1/admin/staff/disable", {"email": "{staff_email}"}),
        _STAFF_ONLY,
    ),
    ("GET", "/v1/admin/staff"): RouteSpec(
        STAFF, Scope.staff_manage, _request("/v1/admin/staff"), _STAFF_ONLY
    ),
    # Re-seals staff TOTP secrets (`sagabank secrets rotate`); the world's are current, so
    # the valid call changes nothing either, but it must not be refused.
    ("POST", "/v1/admin/secrets/reseal"): RouteSpec(
        STAFF,
        Scope.secrets_rotate,
        _request("/v1/admin/secrets/reseal", {"limit": 10}),
        _STAFF_ONLY,
    ),
    **{
        ("GET", path): RouteSpec(STAFF, Scope.audit_read, _request(path), _STAFF_ONLY)
        for path in (
            "/v1/admin/audit-events",
            "/v1/admin/audit-events/verify",
            "/v1/admin/audit-events/export",
        )
    },
}

FORGERIES = (
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


def _cells() -> list[Any]:
    cells: list[Any] = []
    for (method, path), spec in ROUTES.items():
        route = f"{method} {path}"
        cells.extend(
            pytest.param(method, path, forgery, id=f"{route}|{forgery}") for forgery in FORGERIES
        )
        cells.append(pytest.param(method, path, "missing-scope", id=f"{route}|missing-scope"))
        cells.extend(
            pytest.param(method, path, name, id=f"{route}|{name}") for name in spec.refused
        )
    return cells


CELLS = _cells()


def _headers(issuer: TestIssuer, caller: Caller) -> dict[str, str]:
    return issuer.headers(caller.subject, caller.kind, caller.scopes)


async def build_world(client: httpx.AsyncClient, issuer: TestIssuer) -> World:
    bank = Bank(client, issuer)
    account_a = await bank.funded_account(1000, customer_id=CUSTOMER_A)
    account_b = await bank.open_account(customer_id=CUSTOMER_B)
    empty = await bank.open_account(customer_id=CUSTOMER_A)
    frozen = await bank.open_account(customer_id=CUSTOMER_A)
    assert (await bank.status_action(frozen["id"], "freeze")).status_code == 200
    hold_id = await bank.placed_hold(account_a["id"], account_b["id"], 100)
    staff_email = f"staff-{uuid.uuid4().hex[:12]}@staff.example"
    added = await client.post(
        "/v1/admin/staff",
        json={"email": staff_email, "role": "auditor", "password": "a staff passphrase"},
        headers=_headers(issuer, STAFF),
    )
    assert added.status_code == 201, added.text
    return World(account_a["id"], account_b["id"], empty["id"], frozen["id"], hold_id, staff_email)


_FINGERPRINT = """
    SELECT (SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY a.id), '')) FROM accounts a),
           (SELECT count(*) FROM ledger_transfers),
           (SELECT count(*) FROM ledger_entries),
           (SELECT count(*) FROM audit_events),
           (SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY c.id), '')) FROM customers c),
           (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.id), '')) FROM refresh_tokens r),
           (SELECT md5(coalesce(string_agg(k::text, ',' ORDER BY k.client_id), '')) FROM clients k),
           (SELECT md5(coalesce(string_agg(s::text, ',' ORDER BY s.id), '')) FROM staff s)
"""


async def fingerprint(database_url: str) -> tuple[Any, ...]:
    """Everything a request could change, in one snapshot."""
    async with raw_connection(database_url) as connection:
        return tuple(await connection.fetchrow(_FINGERPRINT))


@dataclass
class Shared:
    client: httpx.AsyncClient
    connection: Any
    world: World
    # Forged headers per caller: forging mints an RSA key, too slow to repeat per cell.
    forgeries: dict[Caller, dict[str, dict[str, str]]] = field(default_factory=dict)

    async def fingerprint(self) -> tuple[Any, ...]:
        return tuple(await self.connection.fetchrow(_FINGERPRINT))

    def forged(self, issuer: TestIssuer, caller: Caller, forgery: str) -> dict[str, str]:
        if caller not in self.forgeries:
            self.forgeries[caller] = issuer.forgeries(caller.subject, caller.kind, caller.scopes)
        return self.forgeries[caller][forgery]


@pytest.fixture(scope="module")
async def shared(
    module_database_url: str, signing_keys_dir: Any, issuer: TestIssuer
) -> AsyncIterator[Shared]:
    settings = Settings(
        database_url=module_database_url,
        log_json=True,
        log_level="warning",
        hold_sweep_enabled=False,
        signing_keys_dir=signing_keys_dir,
        secrets_keys=STAFF_SECRETS_KEYS,
        # The matrix sends a few hundred refused requests; none may trip a rate limit.
        rate_limit_money="10000/minute",
    )
    app = accounts_app(settings, token_verifier=issuer.verifier)
    async with app_client(app) as client, raw_connection(module_database_url) as connection:
        world = await build_world(client, issuer)
        yield Shared(client, connection, world)


def _route_keys(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, through included routers too."""
    keys: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        methods = getattr(route, "methods", None) or set()
        path = route.path
        assert isinstance(path, str), f"a route without a path: {route!r}"
        keys.update((method, path) for method in methods if method != "HEAD")
    return keys


class TestEveryRoute:
    def test_every_route_is_covered(self, app: FastAPI) -> None:
        """A route added without a row in ROUTES, and not deliberately public, fails here."""
        routes = _route_keys(app)
        assert routes - PUBLIC_ROUTES - STAFF_TOKEN_ROUTES == set(ROUTES)
        assert routes >= PUBLIC_ROUTES | STAFF_TOKEN_ROUTES

    @pytest.mark.parametrize(("method", "path", "cell"), CELLS)
    async def test_refused_and_nothing_changes(
        self, shared: Shared, issuer: TestIssuer, method: str, path: str, cell: str
    ) -> None:
        spec = ROUTES[(method, path)]
        url, body, extra_headers = spec.build(shared.world)
        expected_status, expected_slug = 401, "unauthorized"
        if cell in FORGERIES:
            caller = spec.caller
            headers = shared.forged(issuer, caller, cell)
        elif cell == "missing-scope":
            headers = _headers(issuer, spec.caller.without(spec.scope))
            expected_status, expected_slug = 403, "insufficient-scope"
        else:
            caller, expected_status = spec.refused[cell]
            headers = _headers(issuer, caller)
            expected_slug = "insufficient-scope" if expected_status == 403 else "account-not-found"
        before = await shared.fingerprint()

        response = await shared.client.request(
            method, url, json=body, headers={**extra_headers, **headers}
        )

        assert_problem(response, expected_status, expected_slug)
        if expected_status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert await shared.fingerprint() == before

    def test_cell_count(self) -> None:
        # 22 routes x 10 forgeries, 22 missing scopes, 24 callers of the wrong kind or
        # not owning the object (staff may write any ledger transfer since issue 15; the
        # worker's refusals beyond its own steps are test_least_privilege's). Issue 19
        # added the three staff routes and the re-sealing of staff secrets.
        assert len(ROUTES) == 22
        assert len(CELLS) == 220 + 22 + 24


STAFF_MEMBER = Caller(f"staff:{uuid.uuid4()}", PrincipalKind.operator, frozenset(OPERATOR_SCOPES))


class TestStaffTokenRoutes:
    @pytest.mark.parametrize(("method", "path"), sorted(STAFF_TOKEN_ROUTES))
    @pytest.mark.parametrize("forgery", FORGERIES)
    async def test_a_forged_staff_token_is_unauthorized(
        self, shared: Shared, issuer: TestIssuer, method: str, path: str, forgery: str
    ) -> None:
        headers = shared.forged(issuer, STAFF_MEMBER, forgery)
        response = await shared.client.request(method, path, headers=headers)
        assert_problem(response, 401, "unauthorized")

    @pytest.mark.parametrize(("method", "path"), sorted(STAFF_TOKEN_ROUTES))
    @pytest.mark.parametrize(
        "caller",
        [CUSTOMER, STAFF, SAGA, Caller("staff:not-a-uuid", PrincipalKind.operator, frozenset())],
        ids=["customer", "operator-client", "worker", "malformed-staff-subject"],
    )
    async def test_any_other_valid_token_is_forbidden(
        self, shared: Shared, issuer: TestIssuer, method: str, path: str, caller: Caller
    ) -> None:
        response = await shared.client.request(method, path, headers=_headers(issuer, caller))
        assert_problem(response, 403, "forbidden")


class TestTheRightCallerPasses:
    """The matrix's control: the same requests with the right token are not refused, so
    the refusals above come from the token, not from a broken request."""

    @pytest.mark.parametrize(("method", "path"), list(ROUTES))
    async def test_valid(
        self, client: httpx.AsyncClient, issuer: TestIssuer, method: str, path: str
    ) -> None:
        world = await build_world(client, issuer)
        spec = ROUTES[(method, path)]
        url, body, extra_headers = spec.build(world)
        response = await client.request(
            method, url, json=body, headers={**extra_headers, **_headers(issuer, spec.caller)}
        )
        assert response.status_code in (200, 201), response.text


class TestOwnership:
    async def test_foreign_account_looks_like_no_account(
        self, bank: Bank, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        theirs = await bank.open_account(customer_id=CUSTOMER_B)
        intruder = issuer.customer(CUSTOMER_A)
        for suffix in ("", "/entries"):
            foreign = await client.get(f"/v1/accounts/{theirs['id']}{suffix}", headers=intruder)
            missing = await client.get(f"/v1/accounts/{uuid.uuid4()}{suffix}", headers=intruder)
            foreign_body = assert_problem(foreign, 404, "account-not-found")
            missing_body = assert_problem(missing, 404, "account-not-found")
            assert foreign_body["title"] == missing_body["title"]
            assert foreign_body.keys() == missing_body.keys()

    async def test_a_customer_lists_only_their_own(
        self, bank: Bank, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        mine = await bank.funded_account(100, customer_id=CUSTOMER_A)
        await bank.open_account(customer_id=CUSTOMER_B)
        me = issuer.customer(CUSTOMER_A)

        listed = await client.get("/v1/accounts", headers=me)
        assert [item["id"] for item in listed.json()["items"]] == [mine["id"]]
        # Naming another customer finds nothing; system accounts are nobody's to see.
        other = await client.get("/v1/accounts", params={"customer_id": CUSTOMER_B}, headers=me)
        assert other.json() == {"items": [], "next_cursor": None}
        own = await client.get("/v1/accounts", params={"customer_id": CUSTOMER_A}, headers=me)
        assert [item["id"] for item in own.json()["items"]] == [mine["id"]]

    async def test_staff_and_the_saga_read_any_account(
        self, bank: Bank, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        theirs = await bank.open_account(customer_id=CUSTOMER_B)
        for caller in (issuer.operator(), issuer.worker()):
            response = await client.get(f"/v1/accounts/{theirs['id']}", headers=caller)
            assert response.status_code == 200, response.text


class TestMassAssignment:
    """Fields the server decides are refused in bodies; the refusal changes nothing."""

    @pytest.mark.parametrize(
        "field",
        [
            {"balance": 1_000_000},
            {"balances": {"posted_minor": 1_000_000}},
            {"status": "active"},
            {"owner_id": CUSTOMER_B},
            {"fraud_score": 0},
            {"kind": "system"},
        ],
        ids=lambda field: next(iter(field)),
    )
    async def test_open_account(
        self,
        client: httpx.AsyncClient,
        issuer: TestIssuer,
        database_url: str,
        field: dict[str, Any],
    ) -> None:
        before = await fingerprint(database_url)
        response = await client.post(
            "/v1/accounts",
            json={"currency": "EUR", **field},
            headers=issuer.customer(CUSTOMER_A),
        )
        assert_problem(response, 422, "invalid-request")
        assert await fingerprint(database_url) == before

    async def test_customer_id_from_the_body(
        self, client: httpx.AsyncClient, issuer: TestIssuer, database_url: str
    ) -> None:
        before = await fingerprint(database_url)
        response = await client.post(
            "/v1/accounts",
            json={"currency": "EUR", "customer_id": CUSTOMER_B},
            headers=issuer.customer(CUSTOMER_A),
        )
        assert_problem(response, 422, "owner-set-by-token")
        assert await fingerprint(database_url) == before

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("deposits", {"amount_minor": 100, "currency": "EUR", "balance": 10**9}),
            ("deposits", {"amount_minor": 100, "currency": "EUR", "status": "frozen"}),
            ("withdrawals", {"amount_minor": 100, "currency": "EUR", "fraud_score": 0}),
            ("limits", {"max_transfer_amount_minor": 5, "status": "active"}),
            ("limits", {"max_transfer_amount_minor": 5, "customer_id": CUSTOMER_B}),
            ("limits", {"overdraft_limit_minor": 5, "balance": 10**9}),
        ],
        ids=lambda value: value if isinstance(value, str) else "-".join(sorted(value)),
    )
    async def test_staff_bodies(
        self, bank: Bank, database_url: str, path: str, body: dict[str, Any]
    ) -> None:
        account = await bank.funded_account(1000, customer_id=CUSTOMER_A)
        before = await fingerprint(database_url)
        method = "PATCH" if path == "limits" else "POST"
        response = await bank.client.request(
            method,
            f"/v1/accounts/{account['id']}/{path}",
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex, **bank.operator},
        )
        assert_problem(response, 422, "invalid-request")
        assert await fingerprint(database_url) == before

    @pytest.mark.parametrize("field", [{"balance": 0}, {"status": "posted"}, {"fraud_score": 1}])
    async def test_ledger_transfer(
        self, bank: Bank, database_url: str, field: dict[str, Any]
    ) -> None:
        alice = await bank.funded_account(1000, customer_id=CUSTOMER_A)
        bob = await bank.open_account(customer_id=CUSTOMER_B)
        before = await fingerprint(database_url)
        response = await bank.single_phase(alice["id"], bob["id"], 10, **field)
        assert_problem(response, 422, "invalid-request")
        assert await fingerprint(database_url) == before


class TestRateLimits:
    async def test_deposits_per_operator(
        self, settings: Settings, clock: Clock, issuer: TestIssuer
    ) -> None:
        limited = settings.model_copy(update={"rate_limit_money": "2/minute"})
        async with app_client(
            accounts_app(limited, clock=clock, token_verifier=issuer.verifier)
        ) as client:
            bank = Bank(client, issuer)
            account = await bank.open_account()
            assert (await bank.deposit(account["id"], 1)).status_code == 201
            assert (await bank.deposit(account["id"], 1)).status_code == 201
            response = await bank.deposit(account["id"], 1)
            assert_problem(response, 429, "too-many-requests")
            assert int(response.headers["retry-after"]) >= 1
            assert (await bank.balances(account["id"]))["posted_minor"] == 2
            # Counted per principal: another operator is not held back.
            other = issuer.operator("operator-2")
            again = await client.post(
                f"/v1/accounts/{account['id']}/deposits",
                json={"amount_minor": 1, "currency": "EUR"},
                headers={"Idempotency-Key": uuid.uuid4().hex, **other},
            )
            assert again.status_code == 201, again.text
