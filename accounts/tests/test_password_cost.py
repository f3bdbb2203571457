"""The cost of a stored password hash. Most accounts tests inject a minimal-cost argon2id
(`accounts_app`); these build the app as deployed (`create_app`, no hasher given) and check
that it hashes at argon2-cffi's defaults, so the shortcut can never leak into a deployment,
and that a hash stored at another cost is brought to the production cost on sign-in."""

from typing import Final

import httpx
from fastapi import FastAPI

from accounts.config import BootstrapClient, Settings
from accounts.main import create_app
from accounts.tests.helpers import MINIMAL_COST_PASSWORD_HASHER, Clock, accounts_app, raw_connection
from kit.testing import app_client

# argon2id, version 19, 64 MiB, three passes, four lanes: what `PasswordHasher()` stores.
PRODUCTION_HASH_PREFIX: Final = "$argon2id$v=19$m=65536,t=3,p=4$"
MINIMAL_COST_HASH_PREFIX: Final = "$argon2id$v=19$m=1024,t=1,p=1$"
EMAIL: Final = "carol@example.com"
PASSWORD: Final = "a passphrase long enough"
CLIENT_ID: Final = "cost-operator"
CLIENT: Final = BootstrapClient.model_validate(
    {
        "client_id": CLIENT_ID,
        "client_secret": "cost-operator-secret-for-tests",
        "kind": "operator",
        "scopes": ["accounts:read"],
    }
)


async def _register(app: FastAPI) -> None:
    async with app_client(app) as http:
        response = await http.post("/v1/customers", json={"email": EMAIL, "password": PASSWORD})
        assert response.status_code == 201, response.text


async def _sign_in(app: FastAPI) -> httpx.Response:
    async with app_client(app) as http:
        form = {"grant_type": "password", "username": EMAIL, "password": PASSWORD}
        return await http.post("/v1/oauth/token", data=form)


async def _customer_hash(database_url: str) -> str:
    async with raw_connection(database_url) as connection:
        stored: str = await connection.fetchval(
            "SELECT password_hash FROM customers WHERE email = $1", EMAIL
        )
    return stored


async def _client_secret_hash(database_url: str) -> str:
    async with raw_connection(database_url) as connection:
        stored: str = await connection.fetchval(
            "SELECT secret_hash FROM clients WHERE client_id = $1", CLIENT_ID
        )
    return stored


async def test_the_app_built_without_a_hasher_hashes_at_the_production_cost(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    app = create_app(settings.model_copy(update={"bootstrap_clients": [CLIENT]}), clock=clock)

    await _register(app)

    assert (await _customer_hash(database_url)).startswith(PRODUCTION_HASH_PREFIX)
    assert (await _client_secret_hash(database_url)).startswith(PRODUCTION_HASH_PREFIX)


async def test_the_test_apps_hash_at_the_minimal_cost(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    await _register(accounts_app(settings, clock=clock))

    assert (await _customer_hash(database_url)).startswith(MINIMAL_COST_HASH_PREFIX)
    assert MINIMAL_COST_PASSWORD_HASHER.memory_cost == 1024


async def test_a_hash_of_another_cost_is_rehashed_at_the_production_cost_on_sign_in(
    settings: Settings, clock: Clock, database_url: str
) -> None:
    await _register(accounts_app(settings, clock=clock))

    response = await _sign_in(create_app(settings, clock=clock))

    assert response.status_code == 200, response.text
    assert (await _customer_hash(database_url)).startswith(PRODUCTION_HASH_PREFIX)
