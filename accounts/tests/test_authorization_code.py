"""The issuer's standards edge beyond the token endpoint: RFC 8414 metadata and RFC 7009
revocation of refresh tokens. (The authorization code flow with PKCE joins this module
when it is built.)"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts.config import Settings
from accounts.main import create_app
from accounts.tests.helpers import Clock
from contracts.auth import TOKEN_ISSUER_DEFAULT, Scope
from kit.testing import app_client, assert_problem

TOKEN = "/v1/oauth/token"
REVOKE = "/v1/oauth/revoke"
METADATA = "/.well-known/oauth-authorization-server"
EMAIL = "carol@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def issuer_app(settings: Settings, clock: Clock) -> FastAPI:
    """The service as it runs: it verifies the tokens it issues with its own keys."""
    return create_app(settings, clock=clock)


@pytest.fixture
async def http(issuer_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(issuer_app) as client:
        yield client


async def signed_in(http: httpx.AsyncClient) -> dict[str, Any]:
    """Register the customer and sign in with the password grant: the token response."""
    registered = await http.post("/v1/customers", json={"email": EMAIL, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    fields = {"grant_type": "password", "username": EMAIL, "password": PASSWORD}
    response = await http.post(TOKEN, data=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refreshed(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def oauth_error(response: httpx.Response, status: int, code: str) -> None:
    body = assert_problem(response, status, f"oauth-{code.replace('_', '-')}")
    assert body["error"] == code


class TestMetadata:
    async def test_names_the_issuer_its_endpoints_and_what_it_supports(
        self, http: httpx.AsyncClient
    ) -> None:
        response = await http.get(METADATA)

        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        metadata = response.json()
        assert metadata["issuer"] == TOKEN_ISSUER_DEFAULT
        assert metadata["token_endpoint"] == f"http://testserver{TOKEN}"
        assert metadata["jwks_uri"] == "http://testserver/.well-known/jwks.json"
        assert metadata["revocation_endpoint"] == f"http://testserver{REVOKE}"
        assert metadata["grant_types_supported"] == [
            "password",
            "refresh_token",
            "client_credentials",
        ]
        assert metadata["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
        ]
        assert metadata["revocation_endpoint_auth_methods_supported"] == ["none"]
        assert metadata["scopes_supported"] == sorted(scope.value for scope in Scope)
        # RFC 8414 requires the field; no response type is offered until the
        # authorization endpoint exists, and nothing is advertised that is not served.
        assert metadata["response_types_supported"] == []
        assert "authorization_endpoint" not in metadata
        assert "code_challenge_methods_supported" not in metadata

    async def test_needs_no_token(self, http: httpx.AsyncClient) -> None:
        response = await http.get(METADATA, headers={"Authorization": "Bearer not-a-token"})
        assert response.status_code == 200, response.text


class TestRevocation:
    async def test_a_revoked_refresh_token_refreshes_nothing(self, http: httpx.AsyncClient) -> None:
        tokens = await signed_in(http)

        response = await http.post(REVOKE, data={"token": tokens["refresh_token"]})

        assert response.status_code == 200, response.text
        assert response.content == b""
        oauth_error(await refreshed(http, tokens["refresh_token"]), 400, "invalid_grant")

    async def test_revokes_the_whole_family(self, http: httpx.AsyncClient) -> None:
        first = (await signed_in(http))["refresh_token"]
        second = (await refreshed(http, first)).json()["refresh_token"]

        # The used first token names the family: the live second one goes with it.
        response = await http.post(
            REVOKE, data={"token": first, "token_type_hint": "refresh_token"}
        )

        assert response.status_code == 200, response.text
        oauth_error(await refreshed(http, second), 400, "invalid_grant")

    async def test_twice_is_still_200(self, http: httpx.AsyncClient) -> None:
        refresh_token = (await signed_in(http))["refresh_token"]
        for _ in range(2):
            response = await http.post(REVOKE, data={"token": refresh_token})
            assert response.status_code == 200, response.text

    @pytest.mark.parametrize("hint", [None, "access_token", "refresh_token", "something_else"])
    async def test_an_unknown_token_is_200(self, http: httpx.AsyncClient, hint: str | None) -> None:
        # RFC 7009 2.2: an invalid token is no error; the client's aim is already met.
        form = {"token": "never-issued"} | ({} if hint is None else {"token_type_hint": hint})
        response = await http.post(REVOKE, data=form)
        assert response.status_code == 200, response.text

    async def test_an_access_token_leaves_its_refresh_token_working(
        self, http: httpx.AsyncClient
    ) -> None:
        tokens = await signed_in(http)
        response = await http.post(REVOKE, data={"token": tokens["access_token"]})
        assert response.status_code == 200, response.text
        assert (await refreshed(http, tokens["refresh_token"])).status_code == 200

    @pytest.mark.parametrize(
        "content",
        ["", "token_type_hint=refresh_token", "token=", "token=a&token=b", f"token={'x' * 5000}"],
        ids=["empty", "no-token", "blank-token", "repeated", "too-long"],
    )
    async def test_malformed(self, http: httpx.AsyncClient, content: str) -> None:
        refresh_token = (await signed_in(http))["refresh_token"]
        response = await http.post(
            REVOKE, content=content, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        oauth_error(response, 400, "invalid_request")
        # Nothing was revoked.
        assert (await refreshed(http, refresh_token)).status_code == 200

    async def test_json_is_not_a_form(self, http: httpx.AsyncClient) -> None:
        refresh_token = (await signed_in(http))["refresh_token"]
        oauth_error(await http.post(REVOKE, json={"token": refresh_token}), 400, "invalid_request")
        assert (await refreshed(http, refresh_token)).status_code == 200

    async def test_rate_limited_per_address(self, settings: Settings, clock: Clock) -> None:
        limited = settings.model_copy(update={"rate_limit_token": "2/minute"})
        async with app_client(create_app(limited, clock=clock)) as http:
            for _ in range(2):
                assert (await http.post(REVOKE, data={"token": "guess"})).status_code == 200
            response = await http.post(REVOKE, data={"token": "guess"})
            assert_problem(response, 429, "too-many-requests")
