"""The issuer's standards edge beyond the token endpoint: RFC 8414 metadata, RFC 7009
revocation of refresh tokens, public clients registered with their exact redirect URIs, and
the authorization code flow with PKCE (RFC 7636) that signs customers and staff in."""

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from jose import jwt
from pydantic import ValidationError

from accounts.config import BootstrapClient, Settings
from accounts.identity import staff
from accounts.identity.resources import IdentityResources
from accounts.tests.helpers import Clock, accounts_app, raw_connection
from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    STAFF_ROLE_SCOPES,
    TOKEN_ISSUER_DEFAULT,
    Scope,
    StaffRole,
)
from kit.db import database_of
from kit.resources import resources_of
from kit.testing import app_client, assert_problem

TOKEN = "/v1/oauth/token"
REVOKE = "/v1/oauth/revoke"
METADATA = "/.well-known/oauth-authorization-server"
AUTHORIZE = "/v1/oauth/authorize"
EMAIL = "carol@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def issuer_app(settings: Settings, clock: Clock) -> FastAPI:
    """The service as it runs: it verifies the tokens it issues with its own keys."""
    return accounts_app(settings, clock=clock)


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
        assert metadata["authorization_endpoint"] == f"http://testserver{AUTHORIZE}"
        assert metadata["grant_types_supported"] == [
            "password",
            "refresh_token",
            "client_credentials",
            "authorization_code",
        ]
        assert metadata["token_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
        ]
        assert metadata["revocation_endpoint_auth_methods_supported"] == ["none"]
        assert metadata["scopes_supported"] == sorted(scope.value for scope in Scope)
        # The code flow only, and PKCE with S256 only (RFC 9700 2.1.1).
        assert metadata["response_types_supported"] == ["code"]
        assert metadata["code_challenge_methods_supported"] == ["S256"]

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
        async with app_client(accounts_app(limited, clock=clock)) as http:
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
        async with app_client(accounts_app(configured, clock=clock)) as http:
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
            async with app_client(accounts_app(configured, clock=clock)):
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
            async with app_client(accounts_app(configured, clock=clock)):
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

    async def test_public_clients_from_configuration_are_registered(
        self,
        settings: Settings,
        clock: Clock,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Public clients hold no secret: Kubernetes names them in its ConfigMap, not in the
        # Secret that holds the confidential ones (deploy/k8s/accounts.yaml).
        registration = [public_client().model_dump(mode="json", exclude_none=True)]
        monkeypatch.setenv("ACCOUNTS_BOOTSTRAP_PUBLIC_CLIENTS", json.dumps(registration))
        fields = settings.model_dump(exclude={"bootstrap_public_clients"})
        configured = Settings(**fields)
        async with app_client(accounts_app(configured, clock=clock)):
            pass
        async with raw_connection(database_url) as connection:
            row = await connection.fetchrow(
                "SELECT kind, secret_hash, redirect_uris FROM clients WHERE client_id = $1",
                CONSOLE_ID,
            )
        assert row is not None, "the public client from ACCOUNTS_BOOTSTRAP_PUBLIC_CLIENTS"
        assert dict(row) == {
            "kind": "public",
            "secret_hash": None,
            "redirect_uris": [CONSOLE_CALLBACK],
        }

    def test_the_public_list_holds_public_clients_only(self, settings: Settings) -> None:
        confidential = {
            "client_id": "operator",
            "client_secret": "operator-secret-for-tests",
            "kind": "operator",
            "scopes": sorted(OPERATOR_SCOPES),
        }
        with pytest.raises(ValidationError, match="holds public clients only"):
            Settings.model_validate(
                settings.model_dump() | {"bootstrap_public_clients": [confidential]}
            )

    def test_a_client_is_registered_by_one_list_only(self, settings: Settings) -> None:
        twice = {
            "bootstrap_clients": [public_client()],
            "bootstrap_public_clients": [public_client()],
        }
        with pytest.raises(ValidationError, match="registered twice: sagabank-console"):
            Settings.model_validate(settings.model_dump() | twice)


# --- The authorization code flow with PKCE -------------------------------------------------

STAFF_ME = "/v1/staff/me"
STYLESHEET = "/v1/oauth/sign-in.css"
CUSTOMER_APP_ID = "customer-app"
CUSTOMER_APP_CALLBACK = "https://app.example.com/callback"
NARROW_STAFF_ID = "narrow-console"
STAFF_EMAIL = "rita@bank.example"
STAFF_PASSWORD = "a long staff passphrase"
STATE = "opaque-state-Zx9"
FAILURES_ALLOWED = 3
SIGN_IN_REFUSED = "The email, the password or the code is wrong."
CUSTOMER_REFUSED = "The email or the password is wrong."
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


VERIFIER = "v" * 20 + "-verifier-of-forty-three-chars-or-more_~."
CHALLENGE = challenge_of(VERIFIER)


def authorize_query(**changes: str | None) -> dict[str, str]:
    """The console's authorization request; a change of None leaves the parameter out."""
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CONSOLE_ID,
        "redirect_uri": CONSOLE_CALLBACK,
        "scope": "reviews:write transfers:read accounts:read",
        "state": STATE,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    query |= changes
    return {name: value for name, value in query.items() if value is not None}


def customer_query(**changes: str | None) -> dict[str, str]:
    return authorize_query(
        client_id=CUSTOMER_APP_ID,
        redirect_uri=CUSTOMER_APP_CALLBACK,
        scope="accounts:read transfers:read",
    ) | {name: value for name, value in changes.items() if value is not None}


def redirect_params(response: httpx.Response, redirect_uri: str) -> dict[str, str]:
    """The query of a 303 to `redirect_uri`, each parameter once."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    parts = urlsplit(location)
    assert location.startswith(redirect_uri + "?"), location
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == redirect_uri
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    assert len({name for name, _ in pairs}) == len(pairs), pairs
    return dict(pairs)


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """An HTML error page on the issuer: no redirect anywhere."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers


@dataclass
class Flow:
    """A browser and a client app against one issuer app: sign-in pages, codes, tokens."""

    http: httpx.AsyncClient
    app: FastAPI
    clock: Clock
    database_url: str

    async def page(self, query: dict[str, str]) -> tuple[httpx.Response, str]:
        """The sign-in page and its CSRF token."""
        response = await self.http.get(AUTHORIZE, params=query)
        assert response.status_code == 200, response.text
        [csrf_token] = CSRF_FIELD.findall(response.text)
        return response, csrf_token

    async def submit(
        self,
        query: dict[str, str],
        *,
        email: str,
        password: str,
        totp: str | None = None,
        csrf_token: str | None = None,
    ) -> httpx.Response:
        """Fill in the page `query` opens and send it (with its CSRF token unless given)."""
        if csrf_token is None:
            _, csrf_token = await self.page(query)
        form = query | {"csrf_token": csrf_token, "email": email, "password": password}
        if totp is not None:
            form["totp"] = totp
        return await self.http.post(AUTHORIZE, data=form)

    async def code(self, query: dict[str, str], **credentials: str) -> str:
        params = redirect_params(await self.submit(query, **credentials), query["redirect_uri"])
        assert params["state"] == query["state"]
        return params["code"]

    async def exchange(self, issued_code: str, **changes: str | None) -> httpx.Response:
        form: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": issued_code,
            "redirect_uri": CONSOLE_CALLBACK,
            "client_id": CONSOLE_ID,
            "code_verifier": VERIFIER,
        }
        form |= changes
        return await self.http.post(
            TOKEN, data={name: value for name, value in form.items() if value is not None}
        )

    async def tokens(self, code: str, **changes: str | None) -> dict[str, Any]:
        response = await self.exchange(code, **changes)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def add_staff(self, role: StaffRole = StaffRole.reviewer) -> staff.Enrolment:
        identity = resources_of(self.app, IdentityResources)
        assert identity.staff_key_ring is not None
        return await staff.add_staff(
            database_of(self.app).sessions,
            identity.issuer,
            identity.staff_key_ring,
            email=STAFF_EMAIL,
            role=role,
            display_name="Rita",
            password=STAFF_PASSWORD,
            actor_id="operator",
            now=self.clock(),
        )

    def totp(self, enrolment: staff.Enrolment) -> str:
        return pyotp.TOTP(enrolment.totp_secret).at(self.clock())

    async def staff_code(self, enrolment: staff.Enrolment, **changes: str | None) -> str:
        return await self.code(
            authorize_query(**changes),
            email=STAFF_EMAIL,
            password=STAFF_PASSWORD,
            totp=self.totp(enrolment),
        )

    async def customer_code(self, **changes: str | None) -> str:
        registered = await self.http.post(
            "/v1/customers", json={"email": EMAIL, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        return await self.code(customer_query(**changes), email=EMAIL, password=PASSWORD)

    async def audit_actions(self, prefix: str) -> list[str]:
        async with raw_connection(self.database_url) as connection:
            rows = await connection.fetch(
                "SELECT action, outcome FROM audit_events WHERE action LIKE $1 ORDER BY sequence",
                f"{prefix}%",
            )
        return [f"{row['action']}:{row['outcome']}" for row in rows]

    async def audit_actors(self, prefix: str) -> list[str]:
        async with raw_connection(self.database_url) as connection:
            rows = await connection.fetch(
                "SELECT actor_id FROM audit_events WHERE action LIKE $1 ORDER BY sequence",
                f"{prefix}%",
            )
        return [row["actor_id"] for row in rows]


NATIVE_APP_ID = "native-app"
# Registered without a port: the app listens where the system lets it (RFC 8252 7.3).
NATIVE_APP_REDIRECT = "http://127.0.0.1/callback"
NATIVE_APP_LOCALHOST = "http://localhost/callback"
FLOW_CLIENTS = [
    public_client(signs_in="staff"),
    public_client(
        client_id=NATIVE_APP_ID,
        scopes=sorted(CUSTOMER_SCOPES),
        redirect_uris=[NATIVE_APP_REDIRECT, NATIVE_APP_LOCALHOST],
    ),
    public_client(
        client_id=CUSTOMER_APP_ID,
        scopes=sorted(CUSTOMER_SCOPES),
        redirect_uris=[CUSTOMER_APP_CALLBACK],
    ),
    public_client(
        client_id=NARROW_STAFF_ID,
        signs_in="staff",
        scopes=sorted({Scope.reviews_write, Scope.transfers_read, Scope.audit_read}),
    ),
    BootstrapClient.model_validate(
        {
            "client_id": "operator",
            "client_secret": "operator-secret-for-tests",
            "kind": "operator",
            "scopes": sorted(OPERATOR_SCOPES),
        }
    ),
]


@pytest.fixture
async def flow(settings: Settings, clock: Clock, database_url: str) -> AsyncIterator[Flow]:
    configured = settings.model_copy(
        update={
            "bootstrap_clients": FLOW_CLIENTS,
            "login_failure_rate": f"{FAILURES_ALLOWED}/minute",
        }
    )
    app = accounts_app(configured, clock=clock)
    async with app_client(app) as http:
        yield Flow(http, app, clock, database_url)


class TestAuthorizePage:
    async def test_a_staff_client_asks_for_email_password_and_code(self, flow: Flow) -> None:
        response, csrf_token = await flow.page(authorize_query())

        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        for field in ("email", "password", "totp"):
            assert f'<label for="{field}"' in page
            assert f'id="{field}" name="{field}"' in page
        assert len(csrf_token) >= 32
        # The browser holds the other half of the double submit.
        cookie = response.headers["set-cookie"]
        assert csrf_token in cookie
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert f"Path={AUTHORIZE}" in cookie

    async def test_a_customer_client_asks_no_code(self, flow: Flow) -> None:
        response, _ = await flow.page(customer_query())
        assert '<label for="password"' in response.text
        assert 'name="totp"' not in response.text

    async def test_strict_headers_and_no_inline_script_or_style(self, flow: Flow) -> None:
        response, _ = await flow.page(authorize_query())

        [policy] = response.headers.get_list("content-security-policy")
        directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
        assert directives["default-src"] == ["'none'"]
        assert directives["style-src"] == ["'self'"]
        assert directives["img-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["base-uri"] == ["'none'"]
        # Chromium applies form-action to the 303 after the post too.
        assert directives["form-action"] == ["'self'", "http://127.0.0.1:8005"]
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]
        assert response.headers.get_list("referrer-policy") == ["no-referrer"]
        assert response.headers.get_list("cache-control") == ["no-store"]
        page = response.text.lower()
        assert "<script" not in page
        assert "<style" not in page
        assert " style=" not in page
        assert f'<link rel="stylesheet" href="{STYLESHEET}">' in response.text

    async def test_the_stylesheet_is_served(self, flow: Flow) -> None:
        response = await flow.http.get(STYLESHEET)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")
        assert "max-width" in response.text

    @pytest.mark.parametrize(
        "changes",
        [
            {"client_id": "nobody"},
            {"client_id": None},
            {"client_id": "operator"},
            {"redirect_uri": CONSOLE_CALLBACK + "/"},
            {"redirect_uri": "http://127.0.0.1:8006/auth/callback"},
            {"redirect_uri": CONSOLE_CALLBACK + "?next=/"},
            {"redirect_uri": "https://evil.example/auth/callback"},
            {"redirect_uri": CUSTOMER_APP_CALLBACK},
            {"redirect_uri": None},
        ],
        ids=[
            "unknown-client",
            "no-client",
            "confidential-client",
            "trailing-slash",
            "other-port",
            "query-added",
            "other-host",
            "another-clients-uri",
            "no-redirect-uri",
        ],
    )
    async def test_a_bad_client_or_redirect_uri_gets_a_page_never_a_redirect(
        self, flow: Flow, changes: dict[str, str | None]
    ) -> None:
        query = authorize_query(**changes)
        assert_error_page(await flow.http.get(AUTHORIZE, params=query))
        # The form post is held to the same rule.
        form = query | {"csrf_token": "x" * 43, "email": EMAIL, "password": PASSWORD}
        assert_error_page(await flow.http.post(AUTHORIZE, data=form))

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"response_type": None}, "invalid_request"),
            ({"code_challenge": None}, "invalid_request"),
            ({"code_challenge_method": None}, "invalid_request"),
            ({"code_challenge_method": "plain"}, "invalid_request"),
            ({"code_challenge": CHALLENGE[:42]}, "invalid_request"),
            ({"code_challenge": CHALLENGE[:-1] + "="}, "invalid_request"),
            ({"scope": "reviews:write no-such-scope"}, "invalid_scope"),
            ({"scope": "accounts:write"}, "invalid_scope"),
        ],
        ids=[
            "implicit",
            "no-response-type",
            "no-challenge",
            "no-method",
            "plain",
            "short-challenge",
            "padded-challenge",
            "unknown-scope",
            "nothing-the-client-may-have",
        ],
    )
    async def test_other_errors_go_back_to_the_client_with_state(
        self, flow: Flow, changes: dict[str, str | None], error: str
    ) -> None:
        response = await flow.http.get(AUTHORIZE, params=authorize_query(**changes))

        params = redirect_params(response, CONSOLE_CALLBACK)
        assert params["error"] == error
        assert params["error_description"]
        assert params["state"] == STATE
        assert "code" not in params


class TestLoopbackRedirects:
    """A native app's code arrives on the port it listens on, and is redeemed with that
    same URI (accounts/tests/test_loopback_redirects.py has every refused variant)."""

    async def test_any_port_of_a_port_less_loopback_ip(self, flow: Flow) -> None:
        listening = "http://127.0.0.1:51234/callback"
        query = customer_query(client_id=NATIVE_APP_ID, redirect_uri=listening)
        page, _ = await flow.page(query)
        # The form's post is followed by the redirect to that port: the CSP names it.
        assert (
            "form-action 'self' http://127.0.0.1:51234;" in page.headers["content-security-policy"]
        )

        code = await flow.customer_code(client_id=NATIVE_APP_ID, redirect_uri=listening)

        for other in (NATIVE_APP_REDIRECT, "http://127.0.0.1:51235/callback"):
            refused = await flow.exchange(code, client_id=NATIVE_APP_ID, redirect_uri=other)
            oauth_error(refused, 400, "invalid_grant")
        tokens = await flow.tokens(code, client_id=NATIVE_APP_ID, redirect_uri=listening)
        assert tokens["refresh_token"]

    @pytest.mark.parametrize(
        "redirect_uri",
        [
            "http://localhost:51234/callback",
            "http://127.0.0.1:51234/other",
            "https://127.0.0.1:51234/callback",
            "http://evil.example@127.0.0.1:51234/callback",
            "http://127.0.0.1:51234/callback#fragment",
        ],
        ids=["localhost", "other-path", "https", "userinfo", "fragment"],
    )
    async def test_nothing_else_gets_past_the_error_page(
        self, flow: Flow, redirect_uri: str
    ) -> None:
        query = customer_query(client_id=NATIVE_APP_ID, redirect_uri=redirect_uri)
        assert_error_page(await flow.http.get(AUTHORIZE, params=query))
        form = query | {"csrf_token": "x" * 43, "email": EMAIL, "password": PASSWORD}
        assert_error_page(await flow.http.post(AUTHORIZE, data=form))


class TestSignIn:
    async def test_a_customer_gets_a_code_and_the_state_back(self, flow: Flow) -> None:
        code = await flow.customer_code(state="state with spaces & symbols/?")
        assert len(code) >= 22

    async def test_the_csrf_token_is_required(self, flow: Flow) -> None:
        await flow.add_staff()
        query = authorize_query()
        credentials = {"email": STAFF_EMAIL, "password": STAFF_PASSWORD}
        _, csrf_token = await flow.page(query)

        missing = await flow.http.post(AUTHORIZE, data=query | credentials)
        forged = await flow.submit(query, **credentials, csrf_token="f" * 43)
        flow.http.cookies.clear()
        without_cookie = await flow.submit(query, **credentials, csrf_token=csrf_token)

        for response in (missing, forged, without_cookie):
            assert_error_page(response, 403)
            assert "reload" in response.text.lower()
        # Refused before the credentials were looked at: no failed sign-in was counted.
        assert await flow.audit_actions("staff.sign_in") == []

    async def test_a_wrong_password_and_an_unknown_email_get_the_same_page(
        self, flow: Flow
    ) -> None:
        await flow.http.post("/v1/customers", json={"email": EMAIL, "password": PASSWORD})
        query = customer_query()

        wrong = await flow.submit(query, email=EMAIL, password="wrong " + PASSWORD)
        unknown = await flow.submit(query, email="nobody@example.com", password=PASSWORD)

        for response in (wrong, unknown):
            assert response.status_code == 401, response.text
            assert "location" not in response.headers
            assert CUSTOMER_REFUSED in response.text
            # The form comes back, ready for another try, with the email kept.
            assert CSRF_FIELD.search(response.text)
        assert 'value="nobody@example.com"' in unknown.text
        assert PASSWORD not in wrong.text

    async def test_the_sign_in_form_is_throttled(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        query = authorize_query()
        for _ in range(FAILURES_ALLOWED):
            response = await flow.submit(
                query, email=STAFF_EMAIL, password="wrong " + STAFF_PASSWORD, totp="000000"
            )
            assert response.status_code == 401, response.text

        # Stopped before the next guess is checked: the right one too.
        response = await flow.submit(
            query, email=STAFF_EMAIL, password=STAFF_PASSWORD, totp=flow.totp(enrolment)
        )

        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert "location" not in response.headers
        assert "too many" in response.text.lower()

    async def test_a_staff_member_signs_in_with_password_and_code(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        code = await flow.staff_code(enrolment)

        tokens = await flow.tokens(code)

        claims = jwt.get_unverified_claims(tokens["access_token"])
        assert claims["sub"] == f"staff:{enrolment.member.id}"
        assert claims["sbk_kind"] == "operator"
        assert tokens["scope"] == "accounts:read reviews:write transfers:read"
        assert tokens["refresh_token"]
        assert await flow.audit_actions("staff.signed_in") == ["staff.signed_in:succeeded"]
        # The code's events name the member as the token does, and as every service's does.
        assert await flow.audit_actors("authorization_code.") == [claims["sub"]] * 2

    async def test_a_code_replayed_within_its_window_is_refused(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        totp = flow.totp(enrolment)
        await flow.code(authorize_query(), email=STAFF_EMAIL, password=STAFF_PASSWORD, totp=totp)
        flow.clock.advance(10)

        again = await flow.submit(
            authorize_query(), email=STAFF_EMAIL, password=STAFF_PASSWORD, totp=totp
        )

        assert again.status_code == 401, again.text
        assert SIGN_IN_REFUSED in again.text

    async def test_a_staff_client_signs_in_no_customer(self, flow: Flow) -> None:
        await flow.http.post("/v1/customers", json={"email": EMAIL, "password": PASSWORD})
        response = await flow.submit(authorize_query(), email=EMAIL, password=PASSWORD, totp="1")
        assert response.status_code == 401, response.text

    async def test_a_disabled_member_is_refused(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        await staff.disable_staff(
            database_of(flow.app).sessions, email=STAFF_EMAIL, actor_id="admin", now=flow.clock()
        )
        response = await flow.submit(
            authorize_query(), email=STAFF_EMAIL, password=STAFF_PASSWORD, totp=flow.totp(enrolment)
        )
        assert response.status_code == 401, response.text
        assert SIGN_IN_REFUSED in response.text

    async def test_no_scope_the_member_may_have_goes_back_as_invalid_scope(
        self, flow: Flow
    ) -> None:
        enrolment = await flow.add_staff(StaffRole.reviewer)
        query = authorize_query(scope="audit:read")
        response = await flow.submit(
            query, email=STAFF_EMAIL, password=STAFF_PASSWORD, totp=flow.totp(enrolment)
        )
        params = redirect_params(response, CONSOLE_CALLBACK)
        assert (params["error"], params["state"]) == ("invalid_scope", STATE)


class TestCodeExchange:
    async def test_a_customer_code_answers_like_the_password_grant(self, flow: Flow) -> None:
        code = await flow.customer_code()

        tokens = await flow.tokens(
            code, client_id=CUSTOMER_APP_ID, redirect_uri=CUSTOMER_APP_CALLBACK
        )

        assert tokens["token_type"] == "Bearer"
        assert tokens["scope"] == "accounts:read transfers:read"
        claims = jwt.get_unverified_claims(tokens["access_token"])
        assert claims["sbk_kind"] == "customer"
        refreshed_ = await refreshed(flow.http, tokens["refresh_token"])
        assert refreshed_.status_code == 200, refreshed_.text

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"code_verifier": "w" + VERIFIER[1:]}, "invalid_grant"),
            ({"code_verifier": CHALLENGE}, "invalid_grant"),
            ({"code_verifier": None}, "invalid_request"),
            ({"code_verifier": VERIFIER[:42]}, "invalid_request"),
            ({"code_verifier": VERIFIER + "!"}, "invalid_request"),
            ({"redirect_uri": CONSOLE_CALLBACK + "/"}, "invalid_grant"),
            ({"redirect_uri": None}, "invalid_request"),
            ({"client_id": NARROW_STAFF_ID}, "invalid_grant"),
            ({"client_id": None}, "invalid_request"),
            ({"code": "never-issued-code"}, "invalid_grant"),
        ],
        ids=[
            "wrong-verifier",
            "challenge-as-verifier",
            "no-verifier",
            "short-verifier",
            "bad-character",
            "other-redirect-uri",
            "no-redirect-uri",
            "other-client",
            "no-client",
            "unknown-code",
        ],
    )
    async def test_refused_and_the_code_left_for_its_client(
        self, flow: Flow, changes: dict[str, str | None], error: str
    ) -> None:
        code = await flow.staff_code(await flow.add_staff())

        oauth_error(await flow.exchange(code, **changes), 400, error)

        assert (await flow.exchange(code)).status_code == 200

    async def test_a_code_is_single_use_and_its_reuse_revokes_what_it_issued(
        self, flow: Flow
    ) -> None:
        code = await flow.staff_code(await flow.add_staff())
        first = await flow.tokens(code)

        oauth_error(await flow.exchange(code), 400, "invalid_grant")

        oauth_error(await refreshed(flow.http, first["refresh_token"]), 400, "invalid_grant")
        assert await flow.audit_actions("authorization_code.") == [
            "authorization_code.issued:succeeded",
            "authorization_code.redeemed:succeeded",
            "authorization_code.reused:refused",
        ]

    async def test_two_redemptions_at_once_one_wins_and_is_then_revoked(self, flow: Flow) -> None:
        code = await flow.staff_code(await flow.add_staff())

        answers = await asyncio.gather(flow.exchange(code), flow.exchange(code))

        assert sorted(answer.status_code for answer in answers) == [200, 400]
        [winner] = [answer.json() for answer in answers if answer.status_code == 200]
        # The loser saw a used code: a copy exists, so what the winner got is revoked.
        oauth_error(await refreshed(flow.http, winner["refresh_token"]), 400, "invalid_grant")

    async def test_a_code_lives_sixty_seconds(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        fresh = await flow.staff_code(enrolment)
        flow.clock.advance(31)
        stale = await flow.staff_code(enrolment)
        flow.clock.advance(30)

        # 61 s after it was issued: refused; 30 s after: still good.
        oauth_error(await flow.exchange(fresh), 400, "invalid_grant")
        assert (await flow.exchange(stale)).status_code == 200

    async def test_a_member_disabled_since_the_sign_in_gets_nothing(self, flow: Flow) -> None:
        code = await flow.staff_code(await flow.add_staff())
        await staff.disable_staff(
            database_of(flow.app).sessions, email=STAFF_EMAIL, actor_id="admin", now=flow.clock()
        )
        oauth_error(await flow.exchange(code), 400, "invalid_grant")

    async def test_the_code_is_stored_hashed(self, flow: Flow) -> None:
        code = await flow.staff_code(await flow.add_staff())
        async with raw_connection(flow.database_url) as connection:
            stored = await connection.fetchval("SELECT code_hash FROM authorization_codes")
        assert stored == hashlib.sha256(code.encode()).hexdigest()

    async def test_staff_scopes_are_requested_and_role_and_client_ceiling(self, flow: Flow) -> None:
        enrolment = await flow.add_staff(StaffRole.reviewer)
        asked = "reviews:write transfers:read accounts:read audit:read staff:manage"
        console = await flow.tokens(await flow.staff_code(enrolment, scope=asked))
        flow.clock.advance(30)
        narrow = await flow.tokens(
            await flow.staff_code(enrolment, scope=asked, client_id=NARROW_STAFF_ID),
            client_id=NARROW_STAFF_ID,
        )
        flow.clock.advance(30)
        everything = await flow.tokens(await flow.staff_code(enrolment, scope=None))

        # Fewer than asked is granted, not refused (RFC 6749 3.3); `scope` says what.
        assert console["scope"] == "accounts:read reviews:write transfers:read"
        assert narrow["scope"] == "reviews:write transfers:read"
        assert everything["scope"] == "accounts:read reviews:write transfers:read"


class TestStaffRefresh:
    async def test_a_staff_refresh_token_renews_as_the_member(self, flow: Flow) -> None:
        enrolment = await flow.add_staff()
        tokens = await flow.tokens(await flow.staff_code(enrolment))

        response = await flow.http.post(
            TOKEN,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": CONSOLE_ID,
            },
        )

        assert response.status_code == 200, response.text
        claims = jwt.get_unverified_claims(response.json()["access_token"])
        assert (claims["sub"], claims["sbk_kind"]) == (f"staff:{enrolment.member.id}", "operator")

    async def test_another_clients_id_is_refused(self, flow: Flow) -> None:
        tokens = await flow.tokens(await flow.staff_code(await flow.add_staff()))
        response = await flow.http.post(
            TOKEN,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": NARROW_STAFF_ID,
            },
        )
        oauth_error(response, 400, "invalid_grant")

    async def test_a_disabled_member_renews_nothing(self, flow: Flow) -> None:
        tokens = await flow.tokens(await flow.staff_code(await flow.add_staff()))

        await staff.disable_staff(
            database_of(flow.app).sessions, email=STAFF_EMAIL, actor_id="admin", now=flow.clock()
        )

        oauth_error(await refreshed(flow.http, tokens["refresh_token"]), 400, "invalid_grant")
        async with raw_connection(flow.database_url) as connection:
            live = await connection.fetchval(
                "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL"
            )
        assert live == 0

    async def test_the_roles_current_scopes_bound_a_renewal(self, flow: Flow) -> None:
        enrolment = await flow.add_staff(StaffRole.reviewer)
        tokens = await flow.tokens(await flow.staff_code(enrolment))
        async with raw_connection(flow.database_url) as connection:
            await connection.execute("UPDATE staff SET role = 'auditor'")

        response = await refreshed(flow.http, tokens["refresh_token"])

        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "accounts:read transfers:read"


class TestStaffProfile:
    async def test_a_staff_token_reads_its_own_profile(self, flow: Flow) -> None:
        enrolment = await flow.add_staff(StaffRole.reviewer)
        tokens = await flow.tokens(await flow.staff_code(enrolment))

        response = await flow.http.get(
            STAFF_ME, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )

        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": str(enrolment.member.id),
            "email": STAFF_EMAIL,
            "display_name": "Rita",
            "role": "reviewer",
            "scopes": sorted(scope.value for scope in STAFF_ROLE_SCOPES[StaffRole.reviewer]),
        }

    async def test_anonymous(self, flow: Flow) -> None:
        assert_problem(await flow.http.get(STAFF_ME), 401, "unauthorized")

    async def test_a_customer_or_client_token_is_forbidden(self, flow: Flow) -> None:
        customer = await signed_in(flow.http)
        operator = await flow.http.post(
            TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": "operator",
                "client_secret": "operator-secret-for-tests",
            },
        )
        assert operator.status_code == 200, operator.text
        for token in (customer["access_token"], operator.json()["access_token"]):
            response = await flow.http.get(STAFF_ME, headers={"Authorization": f"Bearer {token}"})
            assert_problem(response, 403, "forbidden")
