"""The kit's OpenAPI rules: operation ids from function names, the scopes an operation
demands read from its dependencies, and where the issuer's URLs come from."""

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from contracts.auth import PrincipalKind, Scope
from contracts.common import Health
from kit.auth import Principal, authenticate, require_any_scope, require_scopes
from kit.errors import Forbidden
from kit.openapi import install_openapi, oauth2_scheme, operation_id
from kit.problems import problem_responses
from kit.settings import ServiceSettings

Reader = Annotated[Principal, Depends(require_scopes(Scope.accounts_read))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.accounts_read, Scope.accounts_write))]
CustomerOrOperator = Annotated[
    Principal, Depends(require_any_scope(Scope.webhooks_manage, Scope.accounts_admin))
]
AnyCaller = Annotated[Principal, Depends(authenticate)]


def _document() -> dict[str, Any]:
    app = FastAPI(generate_unique_id_function=operation_id)

    @app.get("/public")
    async def get_public_thing() -> None: ...

    @app.get("/any")
    async def get_profile(principal: AnyCaller) -> None: ...

    @app.post("/both")
    async def write_thing(principal: Writer) -> None: ...

    @app.get("/either")
    async def read_either(principal: CustomerOrOperator) -> None: ...

    @app.post("/combined")
    async def combine(reader: Reader, either: CustomerOrOperator) -> None: ...

    install_openapi(app, issuer_url="https://id.example.com/")
    return app.openapi()


def _security(document: dict[str, Any], method: str, path: str) -> list[list[str]] | None:
    operation = document["paths"][path][method]
    if "security" not in operation:
        return None
    return [requirement["OAuth2"] for requirement in operation["security"]]


def test_operation_ids_are_the_functions_names_in_camel_case() -> None:
    def create_transfer() -> None: ...

    route = APIRoute("/v1/transfers", create_transfer, methods=["POST"])
    assert operation_id(route) == "createTransfer"


class TestDeclaredScopes:
    def test_a_public_route_names_no_scheme(self) -> None:
        assert _security(_document(), "get", "/public") is None

    def test_any_bearer_token_is_the_scheme_without_scopes(self) -> None:
        assert _security(_document(), "get", "/any") == [[]]

    def test_every_scope_of_require_scopes_in_one_requirement(self) -> None:
        assert _security(_document(), "post", "/both") == [["accounts:read", "accounts:write"]]

    def test_each_scope_of_require_any_scope_an_alternative(self) -> None:
        assert _security(_document(), "get", "/either") == [["webhooks:manage"], ["accounts:admin"]]

    def test_two_requirements_combine(self) -> None:
        assert _security(_document(), "post", "/combined") == [
            ["accounts:read", "webhooks:manage"],
            ["accounts:admin", "accounts:read"],
        ]

    def test_only_the_oauth2_scheme_is_described(self) -> None:
        schemes = _document()["components"]["securitySchemes"]
        assert list(schemes) == ["OAuth2"]
        token_url = schemes["OAuth2"]["flows"]["password"]["tokenUrl"]
        assert token_url == "https://id.example.com/v1/oauth/token"


class TestErrorResponses:
    def document(self) -> dict[str, Any]:
        app = FastAPI(generate_unique_id_function=operation_id)

        @app.post("/things", responses={**problem_responses(Forbidden), 503: {"model": Health}})
        async def create_thing(name: str) -> None: ...

        install_openapi(app, issuer_url=None)
        return app.openapi()

    def test_problems_and_invalid_requests_are_problem_json(self) -> None:
        document = self.document()
        responses = document["paths"]["/things"]["post"]["responses"]
        problem = {"$ref": "#/components/schemas/Problem"}
        for status, slug in (("403", "insufficient-scope"), ("422", "invalid-request")):
            assert list(responses[status]["content"]) == ["application/problem+json"]
            assert responses[status]["content"]["application/problem+json"]["schema"] == problem
            assert list(responses[status]["content"]["application/problem+json"]["examples"]) == [
                slug
            ]
        assert "HTTPValidationError" not in document["components"]["schemas"]

    def test_another_model_stays_as_the_route_declares_it(self) -> None:
        responses = self.document()["paths"]["/things"]["post"]["responses"]
        schema = {"$ref": "#/components/schemas/Health"}
        assert responses["503"]["content"] == {"application/json": {"schema": schema}}


def test_without_an_issuer_url_the_flows_name_this_host() -> None:
    flows = oauth2_scheme(None)["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/v1/oauth/token"
    assert flows["authorizationCode"]["authorizationUrl"] == "/v1/oauth/authorize"


class TestIssuerUrl:
    def settings(self, **values: Any) -> ServiceSettings:
        return ServiceSettings.model_validate(
            {"database_url": "postgresql://u@localhost/d", "audit_chain_key": "x" * 44} | values
        )

    def test_set_explicitly(self) -> None:
        settings = self.settings(
            auth_issuer_url="https://id.example.com/",
            auth_jwks_url="http://accounts:8001/.well-known/jwks.json",
        )
        assert settings.issuer_url() == "https://id.example.com"

    def test_else_where_the_jwks_is(self) -> None:
        settings = self.settings(auth_jwks_url="http://127.0.0.1:8001/.well-known/jwks.json")
        assert settings.issuer_url() == "http://127.0.0.1:8001"

    def test_else_unknown(self) -> None:
        assert self.settings(auth_jwks_url="http://keys.example.com/keys").issuer_url() is None
        assert self.settings().issuer_url() is None


class TestScopeRequirement:
    def principal(self, *scopes: Scope) -> Principal:
        return Principal("p", PrincipalKind.operator, frozenset(scope.value for scope in scopes))

    async def test_names_the_scopes_missing_of_all_it_needs(self) -> None:
        requirement = require_scopes(Scope.accounts_read, Scope.accounts_write)
        with pytest.raises(Forbidden, match=r"needs the scope accounts:write\.$"):
            await requirement(self.principal(Scope.accounts_read))

    async def test_names_each_alternative(self) -> None:
        requirement = require_any_scope(Scope.webhooks_manage, Scope.accounts_admin)
        with pytest.raises(Forbidden, match="needs the scope webhooks:manage or accounts:admin"):
            await requirement(self.principal(Scope.audit_read))

    async def test_admits_a_caller_with_one_alternative(self) -> None:
        requirement = require_any_scope(Scope.webhooks_manage, Scope.accounts_admin)
        principal = self.principal(Scope.accounts_admin)
        assert await requirement(principal) is principal
