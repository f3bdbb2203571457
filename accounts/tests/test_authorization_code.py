"""The issuer's standards edge beyond the token endpoint: RFC 8414 metadata, RFC 7009
revocation of refresh tokens, and public clients registered with their exact redirect
URIs. (The authorization code flow with PKCE joins this module when it is built.)"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from accounts.config import BootstrapClient, Settings
from accounts.main import create_app
from accounts.tests.helpers import Clock, raw_connection
from contracts.auth import OPERATOR_SCOPES, TOKEN_ISSUER_DEFAULT, Scope
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


CONSOLE_ID = "sagabank-console"
CONSOLE_CALLBACK = "http://127.0.0.1:8005/auth/callback"


def public_client(**changes: Any) -> BootstrapClient:
    fields = {
        "client_id": CONSOLE_ID,
        "kind": "public",
        "scopes": sorted(OPERATOR_SCOPES),
        "redirect_uris": [CONSOLE_CALLBACK],
    }
    return BootstrapClient.model_validate(fields | changes)


class TestPublicClients:
    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"client_secret": "a-secret-a-public-client-cannot-keep"}, "has no client_secret"),
            ({"redirect_uris": []}, "needs its redirect_uris"),
            ({"redirect_uris": ["https://console.example.com/cb#fragment"]}, "no fragment"),
            ({"redirect_uris": ["/auth/callback"]}, "absolute https URI"),
            ({"redirect_uris": ["http://console.example.com/auth/callback"]}, "loopback"),
            ({"redirect_uris": ["javascript://127.0.0.1/alert"]}, "absolute https URI"),
            ({"redirect_uris": [CONSOLE_CALLBACK, CONSOLE_CALLBACK]}, "listed twice"),
        ],
        ids=["secret", "no-uri", "fragment", "relative", "plain-http", "scheme", "repeated"],
    )
    def test_a_bad_registration_is_refused(self, changes: dict[str, Any], reason: str) -> None:
        with pytest.raises(ValidationError, match=reason):
            public_client(**changes)

    @pytest.mark.parametrize("kind", ["service", "operator"])
    def test_a_confidential_client_needs_its_secret(self, kind: str) -> None:
        with pytest.raises(ValidationError, match="needs its client_secret"):
            BootstrapClient.model_validate(
                {"client_id": "operator", "kind": kind, "scopes": sorted(OPERATOR_SCOPES)}
            )

    def test_a_confidential_client_has_no_redirect_uris(self) -> None:
        with pytest.raises(ValidationError, match="has no redirect_uris"):
            BootstrapClient.model_validate(
                {
                    "client_id": "operator",
                    "client_secret": "operator-secret-for-tests",
                    "kind": "operator",
                    "scopes": sorted(OPERATOR_SCOPES),
                    "redirect_uris": [CONSOLE_CALLBACK],
                }
            )

    def test_https_and_loopback_redirects_are_accepted(self) -> None:
        uris = [CONSOLE_CALLBACK, "https://console.example.com/auth/callback?tenant=1"]
        assert public_client(redirect_uris=uris).redirect_uris == uris

    async def test_registered_with_its_redirect_uris_and_no_secret(
        self, settings: Settings, clock: Clock, database_url: str
    ) -> None:
        configured = settings.model_copy(update={"bootstrap_clients": [public_client()]})
        async with app_client(create_app(configured, clock=clock)) as http:
            # A public client has no secret to authenticate with: no client_credentials.
            response = await http.post(
                TOKEN,
                data={
                    "grant_type": "client_credentials",
                    "client_id": CONSOLE_ID,
                    "client_secret": "anything-at-all-here",
                },
            )
            oauth_error(response, 401, "invalid_client")
        async with raw_connection(database_url) as connection:
            row = await connection.fetchrow(
                "SELECT kind, secret_hash, redirect_uris FROM clients WHERE client_id = $1",
                CONSOLE_ID,
            )
        assert dict(row) == {
            "kind": "public",
            "secret_hash": None,
            "redirect_uris": [CONSOLE_CALLBACK],
        }

    async def test_changed_redirect_uris_are_stored_and_audited(
        self, settings: Settings, clock: Clock, database_url: str
    ) -> None:
        moved = "https://console.example.com/auth/callback"
        for client in (public_client(), public_client(redirect_uris=[moved])):
            configured = settings.model_copy(update={"bootstrap_clients": [client]})
            async with app_client(create_app(configured, clock=clock)):
                pass
        async with raw_connection(database_url) as connection:
            uris = await connection.fetchval(
                "SELECT redirect_uris FROM clients WHERE client_id = $1", CONSOLE_ID
            )
            updated = await connection.fetchval(
                "SELECT after FROM audit_events WHERE action = 'client.updated'"
            )
        assert uris == [moved]
        assert '"redirect_uris": ["https://console.example.com/auth/callback"]' in updated

    async def test_a_client_may_turn_public_and_back(
        self, settings: Settings, clock: Clock, database_url: str
    ) -> None:
        # The kind and the secret change in one statement: the database holds a public
        # client to no secret and a confidential one to a secret at every statement.
        confidential = BootstrapClient.model_validate(
            {
                "client_id": CONSOLE_ID,
                "client_secret": "a-console-secret-of-old",
                "kind": "operator",
                "scopes": sorted(OPERATOR_SCOPES),
            }
        )
        stored = []
        for client in (confidential, public_client(), confidential):
            configured = settings.model_copy(update={"bootstrap_clients": [client]})
            async with app_client(create_app(configured, clock=clock)):
                pass
            async with raw_connection(database_url) as connection:
                row = await connection.fetchrow(
                    "SELECT kind, secret_hash IS NULL AS secretless, redirect_uris"
                    " FROM clients WHERE client_id = $1",
                    CONSOLE_ID,
                )
            stored.append(tuple(row))
        assert stored == [
            ("operator", False, []),
            ("public", True, [CONSOLE_CALLBACK]),
            ("operator", False, []),
        ]
