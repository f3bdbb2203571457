"""Each service's OpenAPI is worth generating a client from (docs/decisions/0040): readable,
unique operation ids and a tag on every operation; one OAuth2 scheme naming the issuer's
flows and every scope; on each operation the scopes its route really demands, and none on
a public route."""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI

from accounts.main import MIGRATIONS_PATH as ACCOUNTS_MIGRATIONS
from contracts.auth import (
    AUTHORIZE_PATH,
    CUSTOMER_SCOPES,
    DOCS_CLIENT_ID,
    OPERATOR_SCOPES,
    TOKEN_PATH,
    PrincipalKind,
    Scope,
)
from fraud.main import MIGRATIONS_PATH as FRAUD_MIGRATIONS
from kit.testing import TestIssuer, app_client, assert_problem
from notifications.main import MIGRATIONS_PATH as NOTIFICATIONS_MIGRATIONS
from tests.service_apps import ISSUER_URL, SERVICES, service_apps, write_signing_keys
from tests.test_security_system import ALWAYS_PUBLIC, PUBLIC
from transactions.main import MIGRATIONS_PATH as TRANSACTIONS_MIGRATIONS

OPERATION_ID: Final = re.compile(r"^[a-z][A-Za-z0-9]+$")
METHODS: Final = ("get", "post", "put", "patch", "delete")
MIGRATIONS: Final = {
    "accounts": ACCOUNTS_MIGRATIONS,
    "transactions": TRANSACTIONS_MIGRATIONS,
    "fraud": FRAUD_MIGRATIONS,
    "notifications": NOTIFICATIONS_MIGRATIONS,
}
ISSUER = TestIssuer()
Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    keys = write_signing_keys(tmp_path_factory.mktemp("openapi-keys"))
    return {service: app.openapi() for service, app in service_apps(keys).items()}


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    """(method, path, operation) of each operation the document describes."""
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            if method in METHODS:
                yield method, path, operation


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_readable_unique_id_and_a_tag(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    described = list(operations(documents[service]))
    ids = [operation.get("operationId", "") for _, _, operation in described]
    assert [id_ for id_ in ids if not OPERATION_ID.match(id_)] == []
    assert sorted(id_ for id_ in ids if ids.count(id_) > 1) == []
    assert [(method, path) for method, path, op in described if not op.get("tags")] == []


def test_operation_ids_read_as_their_functions(documents: dict[str, dict[str, Any]]) -> None:
    ids = {
        (service, method, path): operation["operationId"]
        for service, document in documents.items()
        for method, path, operation in operations(document)
    }
    assert ids["transactions", "post", "/v1/transfers"] == "createTransfer"
    assert ids["transactions", "get", "/v1/transfers"] == "listTransfers"
    assert ids["accounts", "get", "/v1/accounts/{account_id}"] == "getAccount"
    assert ids["accounts", "post", TOKEN_PATH] == "issueToken"
    assert ids["notifications", "post", "/v1/webhook-endpoints"] == "createWebhookEndpoint"


@pytest.mark.parametrize("service", SERVICES)
def test_one_oauth2_scheme_names_the_issuers_flows_and_every_scope(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    schemes = documents[service]["components"]["securitySchemes"]
    assert list(schemes) == ["OAuth2"]
    flows = schemes["OAuth2"]["flows"]
    assert set(flows) == {"authorizationCode", "password", "clientCredentials"}
    assert flows["authorizationCode"]["authorizationUrl"] == f"{ISSUER_URL}{AUTHORIZE_PATH}"
    for flow in flows.values():
        assert flow["tokenUrl"] == f"{ISSUER_URL}{TOKEN_PATH}"
        assert set(flow["scopes"]) == {scope.value for scope in Scope}
        assert all(flow["scopes"].values()), "every scope has a description"


@pytest.mark.parametrize("service", SERVICES)
def test_exactly_the_public_routes_name_no_scheme(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    public = {(method, path) for method, path, op in operations(documents[service])}
    public -= {(m, path) for m, path, op in operations(documents[service]) if "security" in op}
    assert public == PUBLIC[service] | ALWAYS_PUBLIC
    for _, _, operation in operations(documents[service]):
        for requirement in operation.get("security", []):
            assert list(requirement) == ["OAuth2"]


async def test_swagger_ui_authorize_names_the_docs_client_with_pkce(tmp_path: Path) -> None:
    app = service_apps(write_signing_keys(tmp_path))["transactions"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = (await client.get("/docs")).text
    assert f'"clientId": "{DOCS_CLIENT_ID}"' in page
    assert '"usePkceWithAuthorizationCodeGrant": true' in page


async def test_no_docs_page_needs_a_cdn_redoc_is_off(tmp_path: Path) -> None:
    # ReDoc's page loads its script from a CDN, blank on a bank's offline network: Swagger
    # UI at /docs (served from the installed package) is the one docs page (decision 0040).
    for service, app in service_apps(write_signing_keys(tmp_path)).items():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/redoc")
        assert_problem(response, 404, "not-found")
        assert app.redoc_url is None, service


def caller_kind(scopes: frozenset[Scope]) -> PrincipalKind:
    """The kind of principal that legitimately holds `scopes`."""
    if scopes <= CUSTOMER_SCOPES:
        return PrincipalKind.customer
    if scopes <= OPERATOR_SCOPES:
        return PrincipalKind.operator
    return PrincipalKind.service


def filled(path: str) -> str:
    """`path` with each parameter a new UUID: an object nobody has."""
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


async def call(
    client: httpx.AsyncClient, method: str, path: str, scopes: frozenset[Scope]
) -> httpx.Response:
    """The request with a token granting exactly `scopes`, and an empty JSON body: what the
    route answers once its scopes let the caller in (422 or 404, typically), or 403."""
    headers = ISSUER.headers(str(uuid.uuid4()), caller_kind(scopes), scopes)
    body: dict[str, object] | None = {} if method in ("post", "put", "patch") else None
    return await client.request(method, filled(path), headers=headers, json=body)


def refused_for_scope(response: httpx.Response) -> bool:
    """A 403 for want of a scope (kit.auth), not for whom the token names (a customer at
    the staff's own route, say)."""
    return response.status_code == 403 and response.json()["detail"].startswith(
        "This operation needs the scope"
    )


def declared(operation: dict[str, Any]) -> list[frozenset[Scope]]:
    return [frozenset(map(Scope, entry["OAuth2"])) for entry in operation["security"]]


@pytest.mark.parametrize("service", SERVICES)
async def test_each_operation_demands_exactly_the_scopes_it_declares(
    service: str, database_factory: Any, tmp_path: Path
) -> None:
    """For every protected operation: a token with any one declared set of scopes is not
    refused for want of a scope; one with a scope less, or with every scope but the
    declared ones, is."""
    database_url = await database_factory(MIGRATIONS[service])
    app: FastAPI = service_apps(
        write_signing_keys(tmp_path),
        database_urls=dict.fromkeys(SERVICES, database_url),
        token_verifier=ISSUER.verifier,
    )[service]
    refused, admitted = [], []
    async with app_client(app) as client:
        for method, path, operation in operations(app.openapi()):
            if "security" not in operation:
                continue
            alternatives = declared(operation)
            for wanted in alternatives:
                response = await call(client, method, path, wanted)
                if refused_for_scope(response):
                    refused.append((method, path, sorted(wanted), response.text))
            # Each declared set is the least that lets in: less by one scope, or every
            # scope but the declared ones, is refused.
            short = [wanted - {scope} for wanted in alternatives for scope in wanted]
            for scopes in [*short, frozenset(Scope).difference(*alternatives)]:
                if not any(alternatives):
                    continue
                response = await call(client, method, path, scopes)
                if not refused_for_scope(response):
                    admitted.append((method, path, sorted(scopes), response.status_code))
    assert refused == [], "refused with a declared set of scopes"
    assert admitted == [], "let in without any declared scope"
