"""ACCOUNTS_PASSWORD_GRANT_ENABLED: the password grant served for the local stack and the
tests (the default), refused as an unsupported grant and not advertised where a deployment
turns it off (compose.yaml and deploy/k8s do: RFC 9700 2.4)."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accounts.config import BootstrapClient, Settings
from accounts.tests.helpers import Clock, accounts_app, raw_connection
from contracts.auth import OPERATOR_SCOPES
from kit.testing import app_client, assert_problem

TOKEN = "/v1/oauth/token"
METADATA = "/.well-known/oauth-authorization-server"
EMAIL = "dora@example.com"
PASSWORD = "correct horse battery staple"
OPERATOR_ID = "operator"
OPERATOR_SECRET = "operator-secret-for-tests"
OPERATOR = BootstrapClient.model_validate(
    {
        "client_id": OPERATOR_ID,
        "client_secret": OPERATOR_SECRET,
        "kind": "operator",
        "scopes": sorted(OPERATOR_SCOPES),
    }
)


@pytest.fixture
def closed_settings(settings: Settings) -> Settings:
    """A deployment's issuer: the password grant off, an operator client registered."""
    return settings.model_copy(
        update={"password_grant_enabled": False, "bootstrap_clients": [OPERATOR]}
    )


@pytest.fixture
async def closed(closed_settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(accounts_app(closed_settings, clock=clock)) as client:
        yield client


@pytest.fixture
def open_app(settings: Settings, clock: Clock) -> FastAPI:
    return accounts_app(settings, clock=clock)


async def _register(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/customers", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 201, response.text


async def _password_grant(http: httpx.AsyncClient) -> httpx.Response:
    fields = {"grant_type": "password", "username": EMAIL, "password": PASSWORD}
    return await http.post(TOKEN, data=fields)


async def _refresh_tokens(database_url: str) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM refresh_tokens")
        return count


class TestDefault:
    def test_the_setting_defaults_to_serving_it(self, settings: Settings) -> None:
        # What `make run` and the tests rely on (decision 0039): deployments turn it off.
        assert settings.password_grant_enabled is True

    async def test_served_and_advertised(self, open_app: FastAPI) -> None:
        async with app_client(open_app) as http:
            await _register(http)
            response = await _password_grant(http)
            metadata = (await http.get(METADATA)).json()

        assert response.status_code == 200, response.text
        assert "password" in metadata["grant_types_supported"]


class TestTurnedOff:
    async def test_a_right_password_is_an_unsupported_grant_and_issues_nothing(
        self,
        closed: httpx.AsyncClient,
        database_url: str,
        capsys: pytest.CaptureFixture[str],
        caplog: Any,
    ) -> None:
        await _register(closed)

        response = await _password_grant(closed)

        body = assert_problem(response, 400, "oauth-unsupported-grant-type")
        assert body["error"] == "unsupported_grant_type"
        assert "access_token" not in body
        assert await _refresh_tokens(database_url) == 0
        captured = capsys.readouterr()
        logged = captured.out + captured.err + caplog.text
        refusals = [line for line in logged.splitlines() if "token.grant_refused" in line]
        assert refusals, "the refusal is logged"
        assert all("password" in line for line in refusals)
        assert all(PASSWORD not in line for line in logged.splitlines())

    async def test_an_unknown_customer_gets_the_same_answer(
        self, closed: httpx.AsyncClient
    ) -> None:
        # No credential is looked at: the answer tells nothing about who exists.
        response = await _password_grant(closed)
        assert_problem(response, 400, "oauth-unsupported-grant-type")

    async def test_not_advertised_in_the_metadata(self, closed: httpx.AsyncClient) -> None:
        metadata = (await closed.get(METADATA)).json()
        assert "password" not in metadata["grant_types_supported"]
        assert {"refresh_token", "client_credentials"} <= set(metadata["grant_types_supported"])

    async def test_the_other_grants_still_work(self, closed: httpx.AsyncClient) -> None:
        response = await closed.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=(OPERATOR_ID, OPERATOR_SECRET),
        )
        assert response.status_code == 200, response.text
        assert response.json()["scope"]

    async def test_registration_still_works(self, closed: httpx.AsyncClient) -> None:
        # Customers register, then sign in through the authorization code flow.
        await _register(closed)

    def test_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, settings: Settings
    ) -> None:
        monkeypatch.setenv("ACCOUNTS_PASSWORD_GRANT_ENABLED", "false")
        monkeypatch.setenv("ACCOUNTS_DATABASE_URL", str(settings.database_url))
        assert Settings().password_grant_enabled is False
