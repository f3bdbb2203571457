"""Service-to-service access tokens: OAuth2 client_credentials, cached and refreshed.

`ClientCredentialsAuth` plugs into an httpx client: it fetches a token from the issuer
before the first request, reuses it until shortly before it expires, and fetches a new one
once if a call answers 401 (the issuer may have rotated keys or revoked the token).
"""

import asyncio
import base64
import time
from collections.abc import AsyncGenerator, Callable, Generator
from urllib.parse import quote

import httpx

# Fetch a new token this long before the current one expires, so no request races expiry.
REFRESH_MARGIN_SECONDS = 60.0


class TokenUnavailable(Exception):
    """The issuer did not hand out a token (wrong secret, issuer down)."""


class ClientCredentialsAuth(httpx.Auth):
    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._scope = scope
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = float("-inf")
        self._lock = asyncio.Lock()
        # RFC 6749 2.3.1: both halves form-encoded before they are joined and base64ed.
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        self._basic = "Basic " + base64.b64encode(pair.encode()).decode()

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        return httpx.Request(
            "POST",
            self.token_url,
            data=form,
            headers={"Accept": "application/json", "Authorization": self._basic},
        )

    def _store(self, response: httpx.Response) -> str:
        if response.status_code != httpx.codes.OK:
            raise TokenUnavailable(
                f"the issuer answered {response.status_code} to client {self._client_id!r}"
            )
        body = response.json()
        token = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int):
            raise TokenUnavailable("the issuer's token response is malformed")
        self._token = token
        self._refresh_at = self._clock() + max(0.0, expires_in - REFRESH_MARGIN_SECONDS)
        return token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            token = self._token
            if token is None or self._clock() >= self._refresh_at:
                token_request = self._token_request()
                token_response = yield token_request
                await token_response.aread()
                token = self._store(token_response)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        async with self._lock:
            if self._token == token:  # nobody refreshed it meanwhile
                token_response = yield self._token_request()
                await token_response.aread()
                self._store(token_response)
            token = self._token
        assert token is not None
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ClientCredentialsAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator
