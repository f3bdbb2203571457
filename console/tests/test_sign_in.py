"""Signing in and out: the authorization code flow with PKCE as the console drives it,
session expiry and renewal, and the cookies and headers every response carries."""

import base64
import hashlib
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from console.config import Settings
from console.main import create_app
from console.testing import session_for_tests, session_headers, store_of
from console.tests.support import Clock, FakeUpstream, token_answer
from console.web import SESSION_COOKIE, SIGN_IN_COOKIE
from contracts.auth import STAFF_ROLE_SCOPES, StaffRole
from kit.testing import app_client

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
REVIEWER_SCOPES = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.reviewer])
PROFILE = {
    "id": "6f1c2b1e-8f5a-4c39-9a51-0d3e2f7b9a10",
    "email": "rita@example.com",
    "display_name": "Rita Reviewer",
    "role": "reviewer",
    "scopes": sorted(REVIEWER_SCOPES),
}
# Fills every path parameter: fixed, so that each pytest worker collects the same tests.
ANY_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
# Reachable without a session on purpose: signing in and out, probes, metrics, the
# stylesheet. Every other route is a page that needs one.
PUBLIC = {
    ("GET", "/auth/sign-in"),
    ("GET", "/auth/callback"),
    ("GET", "/auth/signed-out"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}


def every_page() -> list[tuple[str, str]]:
    """(method, path with its parameters filled) of each route of the console but the
    public ones, read from the app itself: a new page cannot be forgotten here."""
    app = create_app(Settings(log_json=True))
    pages = []
    for route in iter_route_contexts(app.routes):
        methods = getattr(route, "methods", None) or set()  # the static files' mount: none
        path = route.path
        assert isinstance(path, str), route
        for method in methods:
            if method != "HEAD" and (method, path) not in PUBLIC:
                filled = re.sub(r"\{[^}]+\}", ANY_ID, path)
                pages.append((method, filled))
    assert len(pages) >= 8, pages
    return sorted(pages)


PAGES = every_page()


def cookies_of(response: httpx.Response) -> dict[str, SimpleCookie]:
    found: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = cookie
    return found


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issuer_signs_in(issuer: FakeUpstream) -> None:
    issuer.answer("POST", "/v1/oauth/token", token_answer("access-1", " ".join(REVIEWER_SCOPES)))
    issuer.answer("GET", "/v1/staff/me", PROFILE)


async def start_sign_in(client: httpx.AsyncClient) -> tuple[str, dict[str, list[str]]]:
    """The sign-in cookie's key and the authorize URL's query."""
    response = await client.get("/auth/sign-in")
    assert response.status_code == 303
    key = cookies_of(response)[SIGN_IN_COOKIE][SIGN_IN_COOKIE].value
    return key, parse_qs(urlsplit(response.headers["location"]).query)


class TestWithoutASession:
    @pytest.mark.parametrize(("method", "path"), PAGES)
    async def test_every_page_sends_the_browser_to_sign_in(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path)
        assert response.status_code == 303
        assert response.headers["location"] == "/auth/sign-in"

    @pytest.mark.parametrize(("method", "path"), PAGES[:3])
    async def test_an_unknown_session_id_is_no_session(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(
            method, path, headers={"Cookie": f"{SESSION_COOKIE}=made-up"}
        )
        assert response.headers["location"] == "/auth/sign-in"


class TestSignInRedirect:
    async def test_carries_state_s256_challenge_and_the_exact_redirect_uri(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        response = await client.get("/auth/sign-in")
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == (
            "https://issuer.example/v1/oauth/authorize"
        )
        query = parse_qs(location.query)
        key = cookies_of(response)[SIGN_IN_COOKIE][SIGN_IN_COOKIE].value
        [pending] = store_of(app).pending_sign_ins(key)
        assert query["response_type"] == ["code"]
        assert query["client_id"] == ["sagabank-console"]
        assert query["redirect_uri"] == ["http://127.0.0.1:8005/auth/callback"]
        assert query["state"] == [pending.state]
        assert len(base64.urlsafe_b64decode(pending.state + "=")) * 8 >= 128
        assert query["code_challenge"] == [challenge_of(pending.code_verifier)]
        assert query["code_challenge_method"] == ["S256"]
        assert "reviews:write" in query["scope"][0].split()

    async def test_the_pre_session_cookie_is_lax_httponly_and_short_lived(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/auth/sign-in")
        cookie = cookies_of(response)[SIGN_IN_COOKIE][SIGN_IN_COOKIE]
        assert cookie["samesite"] == "lax"
        assert cookie["httponly"] is True
        assert cookie["path"] == "/"
        assert cookie["max-age"] == "600"
        assert not cookie["secure"]  # http on a loopback host: the local stack

    async def test_a_public_https_console_sets_secure_cookies(
        self, clock: Clock, upstreams: dict[str, FakeUpstream]
    ) -> None:
        settings = Settings(public_url="https://console.bank.example", log_json=True)
        transports = {name: upstream.transport() for name, upstream in upstreams.items()}
        async with app_client(create_app(settings, clock=clock, transports=transports)) as client:
            response = await client.get("/auth/sign-in")
        name = f"__Host-{SIGN_IN_COOKIE}"  # TestCookieNames
        cookie = cookies_of(response)[name][name]
        assert cookie["secure"] is True
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["redirect_uri"] == ["https://console.bank.example/auth/callback"]


class TestCookieNames:
    """Secure cookies carry the `__Host-` prefix (Secure, Path=/, no Domain, set by this very
    host), so a sibling subdomain can neither plant nor overwrite them; on http on a
    loopback host browsers refuse that prefix, and the bare names stay."""

    async def test_on_http_loopback_the_bare_names(
        self, client: httpx.AsyncClient, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, query = await start_sign_in(client)
        response = await client.get(
            "/auth/callback",
            params={"code": "the-code", "state": query["state"][0]},
            headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"},
        )
        assert response.status_code == 200, response.text
        session_cookie = cookies_of(response)[SESSION_COOKIE][SESSION_COOKIE]
        assert not session_cookie["secure"]
        assert not any(name.startswith("__Host-") for name in cookies_of(response))

    async def test_when_secure_the_host_prefix(
        self, clock: Clock, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        upstreams["fraud"].answer("GET", "/v1/reviews", {"items": [], "next_cursor": None})
        settings = Settings(public_url="https://console.bank.example", log_json=True)
        transports = {name: upstream.transport() for name, upstream in upstreams.items()}
        app = create_app(settings, clock=clock, transports=transports)
        async with app_client(app) as client:
            started = await client.get("/auth/sign-in")
            client.cookies.clear()
            sign_in_name = f"__Host-{SIGN_IN_COOKIE}"
            sign_in_cookie = cookies_of(started)[sign_in_name][sign_in_name]
            state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
            response = await client.get(
                "/auth/callback",
                params={"code": "the-code", "state": state},
                headers={"Cookie": f"{sign_in_name}={sign_in_cookie.value}"},
            )
            client.cookies.clear()
            session_name = f"__Host-{SESSION_COOKIE}"
            session_cookie = cookies_of(response)[session_name][session_name]
            served = await client.get(
                "/reviews", headers={"Cookie": f"{session_name}={session_cookie.value}"}
            )
            client.cookies.clear()
            # The id under the bare name: what a sibling subdomain could plant. No session.
            planted = await client.get(
                "/reviews", headers={"Cookie": f"{SESSION_COOKIE}={session_cookie.value}"}
            )
        for cookie in (sign_in_cookie, session_cookie):
            assert cookie["secure"] is True
            assert cookie["path"] == "/"
            assert cookie["domain"] == ""
        assert SESSION_COOKIE not in cookies_of(response)
        assert served.status_code == 200, served.text
        assert planted.headers["location"] == "/auth/sign-in"


class TestCallback:
    async def test_valid_exchanges_the_code_with_the_verifier_and_opens_a_session(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer = upstreams["issuer"]
        issuer_signs_in(issuer)
        key, query = await start_sign_in(client)
        [pending] = store_of(app).pending_sign_ins(key)
        verifier = pending.code_verifier
        response = await client.get(
            "/auth/callback",
            params={"code": "the-code", "state": query["state"][0]},
            headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"},
        )
        assert response.status_code == 200, response.text
        # A page that moves on by itself, not a redirect (the Strict cookie, sign_in.py).
        assert '<meta http-equiv="refresh" content="0; url=/">' in response.text
        exchange = parse_qs(issuer.calls("POST", "/v1/oauth/token")[0].content.decode())
        assert exchange == {
            "grant_type": ["authorization_code"],
            "code": ["the-code"],
            "redirect_uri": ["http://127.0.0.1:8005/auth/callback"],
            "client_id": ["sagabank-console"],
            "code_verifier": [verifier],
        }
        cookie = cookies_of(response)[SESSION_COOKIE][SESSION_COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "strict"
        assert cookie["path"] == "/"
        assert len(base64.urlsafe_b64decode(cookie.value + "=")) == 32  # 256 bits
        session = store_of(app).find(cookie.value)
        assert session is not None
        assert session.profile.email == "rita@example.com"
        assert session.access_token == "access-1"
        assert "access-1" not in response.text  # tokens never reach the browser

    @pytest.mark.parametrize("state", [None, "", "not-the-state"])
    async def test_a_wrong_or_missing_state_is_refused(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        upstreams: dict[str, FakeUpstream],
        state: str | None,
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, _query = await start_sign_in(client)
        params = {"code": "the-code"} | ({} if state is None else {"state": state})
        response = await client.get(
            "/auth/callback", params=params, headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"}
        )
        assert response.status_code == 400
        assert SESSION_COOKIE not in cookies_of(response)
        assert upstreams["issuer"].requests == []  # no code was exchanged
        assert len(store_of(app)) == 0

    async def test_a_sign_in_is_used_once(
        self, client: httpx.AsyncClient, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, query = await start_sign_in(client)
        params = {"code": "the-code", "state": query["state"][0]}
        headers = {"Cookie": f"{SIGN_IN_COOKIE}={key}"}
        assert (await client.get("/auth/callback", params=params, headers=headers)).is_success
        again = await client.get("/auth/callback", params=params, headers=headers)
        assert again.status_code == 400

    async def test_without_the_pre_session_cookie_is_refused(
        self, client: httpx.AsyncClient, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        _key, query = await start_sign_in(client)
        response = await client.get(
            "/auth/callback", params={"code": "the-code", "state": query["state"][0]}
        )
        assert response.status_code == 400
        assert upstreams["issuer"].requests == []

    async def test_without_a_code_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, query = await start_sign_in(client)
        response = await client.get(
            "/auth/callback",
            params={"state": query["state"][0]},
            headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"},
        )
        assert response.status_code == 400
        assert upstreams["issuer"].requests == []
        assert len(store_of(app)) == 0

    async def test_the_issuers_refusal_opens_no_session(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        key, query = await start_sign_in(client)
        response = await client.get(
            "/auth/callback",
            params={"error": "access_denied", "state": query["state"][0]},
            headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"},
        )
        assert response.status_code == 400
        assert "access_denied" in response.text
        assert len(store_of(app)) == 0


class TestSignInInSeveralTabs:
    """Each tab's sign-in is kept under the browser's one pre-session cookie, keyed by its
    state: either tab's callback completes, in any order."""

    async def start_in_another_tab(self, client: httpx.AsyncClient, key: str) -> str:
        response = await client.get("/auth/sign-in", headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"})
        assert response.status_code == 303
        assert cookies_of(response)[SIGN_IN_COOKIE][SIGN_IN_COOKIE].value == key
        return parse_qs(urlsplit(response.headers["location"]).query)["state"][0]

    async def callback(self, client: httpx.AsyncClient, key: str, state: str) -> httpx.Response:
        return await client.get(
            "/auth/callback",
            params={"code": "the-code", "state": state},
            headers={"Cookie": f"{SIGN_IN_COOKIE}={key}"},
        )

    async def test_the_first_tabs_callback_completes_after_a_second_tab_started(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, query = await start_sign_in(client)
        second_state = await self.start_in_another_tab(client, key)
        first = await self.callback(client, key, query["state"][0])
        assert first.status_code == 200, first.text
        assert SESSION_COOKIE in cookies_of(first)
        # The second tab's sign-in is still in flight: its cookie stays.
        assert SIGN_IN_COOKIE not in cookies_of(first)
        second = await self.callback(client, key, second_state)
        assert second.status_code == 200, second.text
        assert cookies_of(second)[SIGN_IN_COOKIE][SIGN_IN_COOKIE].value == ""  # all done
        assert len(store_of(app)) == 2

    async def test_a_wrong_state_completes_nothing_and_spoils_no_other_tab(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, query = await start_sign_in(client)
        second_state = await self.start_in_another_tab(client, key)
        refused = await self.callback(client, key, second_state[:-2])
        assert refused.status_code == 400
        assert SIGN_IN_COOKIE not in cookies_of(refused)  # kept for the tabs in flight
        assert upstreams["issuer"].requests == []
        assert (await self.callback(client, key, second_state)).status_code == 200
        assert (await self.callback(client, key, query["state"][0])).status_code == 200

    async def test_another_browsers_state_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer_signs_in(upstreams["issuer"])
        key, _query = await start_sign_in(client)
        other_key, other_query = await start_sign_in(client)
        assert other_key != key
        refused = await self.callback(client, key, other_query["state"][0])
        assert refused.status_code == 400
        assert upstreams["issuer"].requests == []
        assert (await self.callback(client, other_key, other_query["state"][0])).is_success


class TestSessionLifetime:
    async def test_an_idle_session_expires(
        self, client: httpx.AsyncClient, app: FastAPI, clock: Clock
    ) -> None:
        # A token that outlives the test: no renewal is due.
        session = session_for_tests(
            app, access_token="a", scopes=REVIEWER_SCOPES, expires_in_seconds=86400
        )
        headers = session_headers(session)
        clock.advance(899)
        assert (await client.get("/reviews", headers=headers)).status_code != 303
        clock.advance(899)  # used 899 s ago: still alive
        assert (await client.get("/reviews", headers=headers)).status_code != 303
        clock.advance(900)
        response = await client.get("/reviews", headers=headers)
        assert response.headers["location"] == "/auth/sign-in"
        assert store_of(app).find(session.id) is None

    async def test_a_used_session_ends_at_its_absolute_lifetime(
        self, client: httpx.AsyncClient, app: FastAPI, clock: Clock
    ) -> None:
        session = session_for_tests(app, access_token="a", scopes=REVIEWER_SCOPES)
        for _ in range(35):  # 35 x 800 s = 7 h 47 min
            clock.advance(800)
            assert store_of(app).find(session.id) is not None
        clock.advance(800)  # 8 h 0 min 0 s
        assert store_of(app).find(session.id) is None

    async def test_an_access_token_near_its_end_is_renewed_before_use(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        issuer, fraud = upstreams["issuer"], upstreams["fraud"]
        issuer.answer(
            "POST",
            "/v1/oauth/token",
            token_answer("access-2", " ".join(REVIEWER_SCOPES), "refresh-2"),
        )
        fraud.answer("GET", "/v1/reviews", {"items": [], "next_cursor": None})
        session = session_for_tests(
            app,
            access_token="access-1",
            refresh_token="refresh-1",
            scopes=REVIEWER_SCOPES,
            expires_in_seconds=59,
        )
        response = await client.get("/reviews", headers=session_headers(session))
        assert response.status_code == 200
        renewal = parse_qs(issuer.calls("POST", "/v1/oauth/token")[0].content.decode())
        assert renewal == {
            "grant_type": ["refresh_token"],
            "refresh_token": ["refresh-1"],
            "client_id": ["sagabank-console"],
        }
        assert fraud.requests[0].headers["authorization"] == "Bearer access-2"
        assert session.refresh_token == "refresh-2"

    async def test_a_refused_renewal_ends_the_session(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        upstreams["issuer"].answer("POST", "/v1/oauth/token", {"error": "invalid_grant"}, 400)
        session = session_for_tests(
            app, access_token="a", refresh_token="r", scopes=REVIEWER_SCOPES, expires_in_seconds=30
        )
        response = await client.get("/reviews", headers=session_headers(session))
        assert response.headers["location"] == "/auth/sign-in"
        assert store_of(app).find(session.id) is None


class TestSignOut:
    async def test_revokes_the_refresh_token_and_drops_the_session(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        upstreams["issuer"].answer("POST", "/v1/oauth/revoke", None)
        session = session_for_tests(
            app, access_token="a", refresh_token="r-1", scopes=REVIEWER_SCOPES
        )
        response = await client.post(
            "/auth/sign-out",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/auth/signed-out"
        revocation = upstreams["issuer"].calls("POST", "/v1/oauth/revoke")
        assert parse_qs(revocation[0].content.decode()) == {"token": ["r-1"]}
        assert store_of(app).find(session.id) is None
        cleared = cookies_of(response)[SESSION_COOKIE][SESSION_COOKIE]
        assert cleared.value == ""

    async def test_the_signed_out_page_needs_no_session(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/auth/signed-out")
        assert response.status_code == 200
        assert 'href="/auth/sign-in"' in response.text

    @pytest.mark.parametrize("csrf", [None, "", "wrong"])
    async def test_without_the_csrf_token_is_refused_and_signs_nobody_out(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        upstreams: dict[str, FakeUpstream],
        csrf: str | None,
    ) -> None:
        session = session_for_tests(
            app, access_token="a", refresh_token="r-1", scopes=REVIEWER_SCOPES
        )
        data = {} if csrf is None else {"csrf_token": csrf}
        response = await client.post("/auth/sign-out", data=data, headers=session_headers(session))
        assert response.status_code == 403
        assert upstreams["issuer"].requests == []
        assert store_of(app).find(session.id) is session


class TestSecurityHeaders:
    @pytest.mark.parametrize(
        "path", ["/auth/sign-in", "/transfers", "/static/console.css", "/healthz"]
    )
    async def test_on_every_response(
        self, client: httpx.AsyncClient, app: FastAPI, path: str
    ) -> None:
        session = session_for_tests(app, access_token="a", scopes=REVIEWER_SCOPES)
        response = await client.get(path, headers=session_headers(session))
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"


class TestSignInStartsAreLimited:
    """Each start keeps a sign-in in memory: one address cannot flood the store and push
    out other people's sign-ins in flight."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(
            public_url="http://127.0.0.1:8005",
            issuer_public_url="https://issuer.example",
            issuer_url="http://accounts.internal",
            rate_limit_sign_in="3/minute",
            log_json=True,
        )

    async def test_past_the_rate_an_address_gets_429_and_keeps_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        for _ in range(3):
            await start_sign_in(client)
        kept = store_of(app).sign_ins_in_flight()

        refused = await client.get("/auth/sign-in")

        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert SIGN_IN_COOKIE not in cookies_of(refused)
        assert store_of(app).sign_ins_in_flight() == kept
