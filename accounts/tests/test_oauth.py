"""The token issuer: registration, the three grants, their errors, throttling, refresh
rotation with reuse detection, and secrets kept out of the logs."""

import base64
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from limits.aio.storage import MemoryStorage
from prometheus_client import REGISTRY

from accounts.config import BootstrapClient, Settings
from accounts.tests.helpers import Clock, accounts_app
from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    TOKEN_ISSUER_DEFAULT,
    WORKER_SCOPES,
    ServiceAudience,
)
from kit.auth import StaticKeySource, TokenVerifier
from kit.testing import app_client, assert_problem
from kit.token_signing import SigningKey
from kit.tokens import ClientCredentialsAuth

TOKEN = "/v1/oauth/token"
OPERATOR_ID = "operator"
OPERATOR_SECRET = "operator-secret-for-tests"
WORKER_ID = "sagabank-worker"
WORKER_SECRET = "worker-secret-for-tests-0001"
EMAIL = "Alice@Example.com"
PASSWORD = "correct horse battery staple"

CLIENTS = [
    BootstrapClient.model_validate(
        {
            "client_id": OPERATOR_ID,
            "client_secret": OPERATOR_SECRET,
            "kind": "operator",
            "scopes": sorted(OPERATOR_SCOPES),
        }
    ),
    BootstrapClient.model_validate(
        {
            "client_id": WORKER_ID,
            "client_secret": WORKER_SECRET,
            "kind": "service",
            "scopes": sorted(WORKER_SCOPES),
        }
    ),
]


ATTACKER_ADDRESS = "203.0.113.7"
VICTIM_ADDRESS = "198.51.100.8"


class SharedMemoryStorage(MemoryStorage):
    """Rate limit counters every instance shares, as replicas share a Redis server: the
    `limits` library finds it by its scheme in a storage URI."""

    STORAGE_SCHEME = ["async+sagabank-shared-test"]
    _counters: Counter[str] = Counter()
    _expirations: dict[str, float] = {}
    _events: dict[str, list[Any]] = {}

    def __init__(self, uri: str | None = None, **options: Any) -> None:
        super().__init__(uri, **options)
        self.storage, self.expirations, self.events = (
            self._counters,
            self._expirations,
            self._events,
        )

    @classmethod
    def forget(cls) -> None:
        cls._counters.clear()
        cls._expirations.clear()
        cls._events.clear()


@asynccontextmanager
async def addressed(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running `app` whose requests come from `address`."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def issuer_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"bootstrap_clients": CLIENTS, "login_failure_rate": "3/minute"}
    )


@pytest.fixture
def issuer_app(issuer_settings: Settings, clock: Clock) -> FastAPI:
    """The service as it runs: it verifies the tokens it issues with its own keys."""
    return accounts_app(issuer_settings, clock=clock)


@pytest.fixture
async def http(issuer_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(issuer_app) as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def register(
    http: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD
) -> dict[str, Any]:
    response = await http.post("/v1/customers", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    fields = {"grant_type": "password", "username": EMAIL, "password": PASSWORD, **form}
    return await http.post(TOKEN, data=fields)


def oauth_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    body = assert_problem(response, status, f"oauth-{code.replace('_', '-')}")
    assert body["error"] == code
    return body


async def claims_of(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Verify the token the way another service would: against the published JWKS."""
    jwks = (await http.get("/.well-known/jwks.json")).json()
    source = StaticKeySource({key["kid"]: key for key in jwks["keys"]})
    verifier = TokenVerifier(source, issuer=TOKEN_ISSUER_DEFAULT, audience=ServiceAudience.accounts)
    await verifier.verify(token)
    header = jwt.get_unverified_header(token)
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return {"header": header, **claims}


class TestJwks:
    async def test_publishes_the_public_key_only(
        self, http: httpx.AsyncClient, signing_key: SigningKey
    ) -> None:
        response = await http.get("/.well-known/jwks.json")
        assert response.status_code == 200
        (key,) = response.json()["keys"]
        assert key["kid"] == signing_key.kid
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


class TestRegistration:
    async def test_valid(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/v1/customers",
            json={"email": EMAIL, "password": PASSWORD, "display_name": "Alice"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"id", "email", "display_name", "created_at"}
        assert body["email"] == "alice@example.com"
        assert uuid.UUID(body["id"])

    async def test_duplicate_email(self, http: httpx.AsyncClient) -> None:
        await register(http)
        response = await http.post(
            "/v1/customers", json={"email": "ALICE@example.com", "password": "another passphrase"}
        )
        assert_problem(response, 409, "customer-exists")

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "not-an-email", "password": PASSWORD},
            {"email": EMAIL, "password": "short"},
            {"email": EMAIL, "password": "x" * 129},
            {"email": EMAIL, "password": PASSWORD, "id": str(uuid.uuid4())},
            {"email": EMAIL, "password": PASSWORD, "scopes": ["accounts:admin"]},
        ],
        ids=["email", "short-password", "long-password", "id", "scopes"],
    )
    async def test_malformed(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        assert_problem(await http.post("/v1/customers", json=body), 422, "invalid-request")
        # Nothing was registered: the address is still free.
        await register(http)

    async def test_rate_limited_per_address(self, issuer_settings: Settings, clock: Clock) -> None:
        limited = issuer_settings.model_copy(update={"rate_limit_token": "2/minute"})
        async with app_client(accounts_app(limited, clock=clock)) as http:
            await register(http, email="one@example.com")
            await register(http, email="two@example.com")
            response = await http.post(
                "/v1/customers", json={"email": "three@example.com", "password": PASSWORD}
            )
            assert_problem(response, 429, "too-many-requests")
            assert int(response.headers["retry-after"]) >= 1


class TestPasswordGrant:
    async def test_valid(self, http: httpx.AsyncClient, signing_key: SigningKey) -> None:
        customer = await register(http)

        response = await login(http)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        assert set(body["scope"].split()) == {scope.value for scope in CUSTOMER_SCOPES}
        assert body["refresh_token"]
        claims = await claims_of(http, body["access_token"])
        assert claims["header"]["kid"] == signing_key.kid
        assert claims["header"]["alg"] == "RS256"
        assert claims["sub"] == customer["id"]
        assert claims["sbk_kind"] == "customer"
        assert claims["iss"] == TOKEN_ISSUER_DEFAULT
        assert claims["aud"] == [
            "sagabank:accounts",
            "sagabank:notifications",
            "sagabank:transactions",
        ]
        assert claims["exp"] - claims["iat"] == 900
        assert uuid.UUID(claims["jti"])

    async def test_the_token_opens_the_customers_own_accounts(
        self, http: httpx.AsyncClient
    ) -> None:
        customer = await register(http)
        token = (await login(http)).json()["access_token"]
        me = {"Authorization": f"Bearer {token}"}
        opened = await http.post("/v1/accounts", json={"currency": "EUR"}, headers=me)
        assert opened.status_code == 201, opened.text
        assert opened.json()["customer_id"] == customer["id"]
        listed = await http.get("/v1/accounts", headers=me)
        assert [item["id"] for item in listed.json()["items"]] == [opened.json()["id"]]

    async def test_narrowed_scope(self, http: httpx.AsyncClient) -> None:
        await register(http)
        response = await login(http, scope="accounts:read")
        assert response.json()["scope"] == "accounts:read"
        token = response.json()["access_token"]
        assert (await claims_of(http, token))["scope"] == "accounts:read"
        opened = await http.post(
            "/v1/accounts", json={"currency": "EUR"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(opened, 403, "insufficient-scope")

    @pytest.mark.parametrize("scope", ["accounts:admin", "accounts:read audit:read", "root"])
    async def test_scope_beyond_a_customer(self, http: httpx.AsyncClient, scope: str) -> None:
        await register(http)
        oauth_error(await login(http, scope=scope), 400, "invalid_scope")

    async def test_wrong_password_and_unknown_user_look_alike(
        self, http: httpx.AsyncClient
    ) -> None:
        await register(http)
        wrong = await login(http, password="not the password")
        unknown = await login(http, username="nobody@example.com")
        wrong_body = oauth_error(wrong, 400, "invalid_grant")
        unknown_body = oauth_error(unknown, 400, "invalid_grant")
        for body in (wrong_body, unknown_body):
            del body["trace_id"]
            del body["request_id"]
        assert wrong_body == unknown_body

    @pytest.mark.parametrize(
        "form",
        [
            {"grant_type": "password", "username": EMAIL},
            {"grant_type": "password", "password": PASSWORD},
            {"username": EMAIL, "password": PASSWORD},
            {"grant_type": "password", "username": "x" * 300, "password": PASSWORD},
        ],
        ids=["no-password", "no-username", "no-grant-type", "long-username"],
    )
    async def test_invalid_request(self, http: httpx.AsyncClient, form: dict[str, str]) -> None:
        oauth_error(await http.post(TOKEN, data=form), 400, "invalid_request")

    async def test_repeated_parameter(self, http: httpx.AsyncClient) -> None:
        content = f"grant_type=password&username={EMAIL}&password=a&password=b"
        response = await http.post(
            TOKEN,
            content=content,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        oauth_error(response, 400, "invalid_request")

    async def test_json_is_not_a_form(self, http: httpx.AsyncClient) -> None:
        await register(http)
        response = await http.post(
            TOKEN, json={"grant_type": "password", "username": EMAIL, "password": PASSWORD}
        )
        oauth_error(response, 400, "invalid_request")

    @pytest.mark.parametrize(
        "grant", ["implicit", "urn:ietf:params:oauth:grant-type:device_code", ""]
    )
    async def test_unsupported_grant_type(self, http: httpx.AsyncClient, grant: str) -> None:
        response = await http.post(TOKEN, data={"grant_type": grant})
        expected = "invalid_request" if not grant else "unsupported_grant_type"
        oauth_error(response, 400, expected)


def _login_rejections() -> float:
    labels = {"service": "accounts", "limit": "login"}
    return REGISTRY.get_sample_value("sagabank_rate_limit_rejections_total", labels) or 0.0


class TestLoginThrottle:
    async def test_failures_throttle_the_username(self, http: httpx.AsyncClient) -> None:
        await register(http)
        for _ in range(3):
            oauth_error(await login(http, password="wrong guess"), 400, "invalid_grant")
        rejections_before = _login_rejections()

        # Even the right password is refused now: a 429 only for wrong guesses would
        # tell the right one apart.
        response = await login(http)

        assert_problem(response, 429, "too-many-requests")
        assert int(response.headers["retry-after"]) >= 1
        assert _login_rejections() - rejections_before == 1

    async def test_failures_on_other_names_lock_out_no_one(self, http: httpx.AsyncClient) -> None:
        # Behind a proxy every client may share an address: failures there must not lock
        # every password login.
        await register(http)
        for number in range(3):
            await login(http, username=f"guess-{number}@example.com")
        assert (await login(http)).status_code == 200

    async def test_a_victim_still_signs_in_from_their_own_address(
        self, issuer_app: FastAPI
    ) -> None:
        async with addressed(issuer_app, ATTACKER_ADDRESS) as attacker:
            await register(attacker)
            for _ in range(3):
                await login(attacker, password="wrong guess")
            assert_problem(await login(attacker), 429, "too-many-requests")
        async with addressed(issuer_app, VICTIM_ADDRESS) as victim:
            assert (await login(victim)).status_code == 200

    async def test_limits_hold_across_replicas(
        self, issuer_settings: Settings, clock: Clock
    ) -> None:
        shared = issuer_settings.model_copy(
            update={"rate_limit_storage_uri": f"{SharedMemoryStorage.STORAGE_SCHEME[0]}://"}
        )
        SharedMemoryStorage.forget()
        one, two = accounts_app(shared, clock=clock), accounts_app(shared, clock=clock)
        async with app_client(one) as first, app_client(two) as second:
            await register(first)
            for replica in (first, second, first):
                await login(replica, password="wrong guess")
            assert_problem(await login(second), 429, "too-many-requests")

    async def test_successes_do_not_count(self, http: httpx.AsyncClient) -> None:
        await register(http)
        for _ in range(5):
            assert (await login(http)).status_code == 200


class TestRefreshGrant:
    async def refresh(self, http: httpx.AsyncClient, token: str, **form: str) -> httpx.Response:
        return await http.post(
            TOKEN, data={"grant_type": "refresh_token", "refresh_token": token, **form}
        )

    async def test_rotates(self, http: httpx.AsyncClient) -> None:
        customer = await register(http)
        first = (await login(http)).json()

        response = await self.refresh(http, first["refresh_token"])

        assert response.status_code == 200, response.text
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await claims_of(http, second["access_token"]))["sub"] == customer["id"]
        third = await self.refresh(http, second["refresh_token"])
        assert third.status_code == 200, third.text

    async def test_reuse_revokes_the_family(self, http: httpx.AsyncClient) -> None:
        await register(http)
        stolen = (await login(http)).json()["refresh_token"]
        rotated = (await self.refresh(http, stolen)).json()["refresh_token"]
        other_login = (await login(http)).json()["refresh_token"]

        # The thief (or the victim) shows the used token again...
        oauth_error(await self.refresh(http, stolen), 400, "invalid_grant")

        # ...and the whole family is gone, the rotated token too; other sign-ins stay.
        oauth_error(await self.refresh(http, rotated), 400, "invalid_grant")
        assert (await self.refresh(http, other_login)).status_code == 200

    async def test_expired(self, http: httpx.AsyncClient, clock: Clock) -> None:
        await register(http)
        token = (await login(http)).json()["refresh_token"]
        clock.advance(30 * 24 * 3600)
        oauth_error(await self.refresh(http, token), 400, "invalid_grant")

    async def test_rotation_keeps_the_family_deadline(
        self, http: httpx.AsyncClient, clock: Clock
    ) -> None:
        await register(http)
        token = (await login(http)).json()["refresh_token"]
        clock.advance(29 * 24 * 3600)
        token = (await self.refresh(http, token)).json()["refresh_token"]
        clock.advance(2 * 24 * 3600)
        oauth_error(await self.refresh(http, token), 400, "invalid_grant")

    async def test_unknown(self, http: httpx.AsyncClient) -> None:
        oauth_error(await self.refresh(http, "no-such-token"), 400, "invalid_grant")

    async def test_scope(self, http: httpx.AsyncClient) -> None:
        await register(http)
        token = (await login(http, scope="accounts:read transfers:read")).json()["refresh_token"]
        narrower = await self.refresh(http, token, scope="accounts:read")
        assert narrower.json()["scope"] == "accounts:read"
        wider = await self.refresh(
            http, narrower.json()["refresh_token"], scope="accounts:read accounts:write"
        )
        oauth_error(wider, 400, "invalid_scope")
        # Refused for its scope, the token was not used up.
        again = await self.refresh(http, narrower.json()["refresh_token"])
        assert set(again.json()["scope"].split()) == {"accounts:read", "transfers:read"}


class TestClientCredentials:
    async def test_basic(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            headers=basic(OPERATOR_ID, OPERATOR_SECRET),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "refresh_token" not in body
        claims = await claims_of(http, body["access_token"])
        assert (claims["sub"], claims["sbk_kind"]) == (OPERATOR_ID, "operator")
        assert set(claims["scope"].split()) == {scope.value for scope in OPERATOR_SCOPES}

    async def test_form_fields(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": WORKER_ID,
                "client_secret": WORKER_SECRET,
                "scope": "ledger:write",
            },
        )
        assert response.status_code == 200, response.text
        claims = await claims_of(http, response.json()["access_token"])
        assert (claims["sbk_kind"], claims["scope"]) == ("service", "ledger:write")

    async def test_scope_beyond_the_client(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            TOKEN,
            data={"grant_type": "client_credentials", "scope": "audit:read"},
            headers=basic(WORKER_ID, WORKER_SECRET),
        )
        oauth_error(response, 400, "invalid_scope")

    @pytest.mark.parametrize(
        ("client_id", "secret"),
        [(OPERATOR_ID, "wrong-secret-entirely"), ("nobody", OPERATOR_SECRET)],
        ids=["wrong-secret", "unknown-client"],
    )
    async def test_invalid_client(
        self, http: httpx.AsyncClient, client_id: str, secret: str
    ) -> None:
        response = await http.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
        )
        oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic")

    async def test_no_client_authentication(self, http: httpx.AsyncClient) -> None:
        response = await http.post(TOKEN, data={"grant_type": "client_credentials"})
        oauth_error(response, 401, "invalid_client")

    async def test_two_ways_at_once(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            TOKEN,
            data={"grant_type": "client_credentials", "client_id": OPERATOR_ID},
            headers=basic(OPERATOR_ID, OPERATOR_SECRET),
        )
        oauth_error(response, 400, "invalid_request")

    async def test_the_workers_client_gets_and_uses_a_token(self, issuer_app: FastAPI) -> None:
        """kit.tokens.ClientCredentialsAuth, as the worker uses it, against the issuer."""
        async with app_client(issuer_app) as http:
            auth = ClientCredentialsAuth(
                f"{http.base_url}{TOKEN}", client_id=WORKER_ID, client_secret=WORKER_SECRET
            )
            transport = httpx.ASGITransport(app=issuer_app)
            async with httpx.AsyncClient(
                transport=transport, base_url=str(http.base_url), auth=auth
            ) as worker:
                response = await worker.get(f"/v1/ledger/transfers/{uuid.uuid4()}")
                assert_problem(response, 404, "ledger-transfer-not-found")

    async def test_rate_limited_across_replicas(
        self, issuer_settings: Settings, clock: Clock
    ) -> None:
        shared = issuer_settings.model_copy(
            update={
                "rate_limit_token": "2/minute",
                "rate_limit_storage_uri": f"{SharedMemoryStorage.STORAGE_SCHEME[0]}://",
            }
        )
        SharedMemoryStorage.forget()
        one, two = accounts_app(shared, clock=clock), accounts_app(shared, clock=clock)
        async with app_client(one) as first, app_client(two) as second:
            statuses = [
                (
                    await replica.post(
                        TOKEN,
                        data={"grant_type": "client_credentials"},
                        headers=basic(WORKER_ID, WORKER_SECRET),
                    )
                ).status_code
                for replica in (first, second, first)
            ]
            assert statuses == [200, 200, 429]

    async def test_rate_limited_per_client(self, issuer_settings: Settings, clock: Clock) -> None:
        limited = issuer_settings.model_copy(update={"rate_limit_token": "2/minute"})
        async with app_client(accounts_app(limited, clock=clock)) as http:
            statuses = [
                (
                    await http.post(
                        TOKEN,
                        data={"grant_type": "client_credentials"},
                        headers=basic(WORKER_ID, WORKER_SECRET),
                    )
                ).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]


class TestBootstrap:
    async def test_a_changed_secret_replaces_the_old_one(
        self, issuer_settings: Settings, clock: Clock
    ) -> None:
        async with app_client(accounts_app(issuer_settings, clock=clock)):
            pass
        changed = [
            BootstrapClient.model_validate(
                {
                    **CLIENTS[0].model_dump(),
                    "client_secret": "a-brand-new-operator-secret",
                }
            ),
            CLIENTS[1],
        ]
        restarted = issuer_settings.model_copy(update={"bootstrap_clients": changed})
        async with app_client(accounts_app(restarted, clock=clock)) as http:
            old = await http.post(
                TOKEN,
                data={"grant_type": "client_credentials"},
                headers=basic(OPERATOR_ID, OPERATOR_SECRET),
            )
            new = await http.post(
                TOKEN,
                data={"grant_type": "client_credentials"},
                headers=basic(OPERATOR_ID, "a-brand-new-operator-secret"),
            )
            oauth_error(old, 401, "invalid_client")
            assert new.status_code == 200, new.text

    async def test_a_removed_client_gets_no_more_tokens(
        self, issuer_settings: Settings, clock: Clock
    ) -> None:
        async with app_client(accounts_app(issuer_settings, clock=clock)):
            pass
        restarted = issuer_settings.model_copy(update={"bootstrap_clients": CLIENTS[1:]})
        async with app_client(accounts_app(restarted, clock=clock)) as http:
            response = await http.post(
                TOKEN,
                data={"grant_type": "client_credentials"},
                headers=basic(OPERATOR_ID, OPERATOR_SECRET),
            )
            oauth_error(response, 401, "invalid_client")


class TestSecretsStayOutOfLogs:
    async def test_nothing_secret_is_logged(
        self, http: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], caplog: Any
    ) -> None:
        await register(http)
        token = (await login(http)).json()
        await login(http, password="a wrong password guess")
        refreshed = await http.post(
            TOKEN, data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        )
        client = await http.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            headers=basic(OPERATOR_ID, OPERATOR_SECRET),
        )
        await http.get("/v1/accounts", headers={"Authorization": f"Bearer {token['access_token']}"})

        captured = capsys.readouterr()
        logged = captured.out + captured.err + caplog.text
        assert "token.issued" in logged, "the logs were not captured"
        for secret in (
            PASSWORD,
            "a wrong password guess",
            OPERATOR_SECRET,
            WORKER_SECRET,
            token["access_token"],
            token["refresh_token"],
            refreshed.json()["access_token"],
            refreshed.json()["refresh_token"],
            client.json()["access_token"],
            basic(OPERATOR_ID, OPERATOR_SECRET)["Authorization"].split()[1],
        ):
            assert secret not in logged

    def test_settings_do_not_show_client_secrets(self) -> None:
        assert OPERATOR_SECRET not in repr(CLIENTS)
        assert OPERATOR_SECRET not in str(CLIENTS[0])
