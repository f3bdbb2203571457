"""The worker's client_credentials auth: one token, reused, refreshed when due or refused."""

import base64

import httpx
import pytest

from kit.tokens import REFRESH_MARGIN_SECONDS, ClientCredentialsAuth, TokenUnavailable

TOKEN_URL = "http://issuer.test/v1/oauth/token"


class Issuer:
    """A token endpoint and a protected API in one transport; records what it saw."""

    def __init__(self, *, lifetime: int = 900) -> None:
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.seen_tokens: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url == TOKEN_URL:
            scheme, _, encoded = request.headers["authorization"].partition(" ")
            assert scheme == "Basic"
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            assert b"grant_type=client_credentials" in request.content
            if (client_id, secret) != ("worker", "s3cret%3A%2Fx"):
                return httpx.Response(401, json={"error": "invalid_client"})
            token = f"token-{len(self.issued) + 1}"
            self.issued.append(token)
            body = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
            return httpx.Response(200, json=body)
        token = request.headers["authorization"].removeprefix("Bearer ")
        self.seen_tokens.append(token)
        if token in self.revoked:
            return httpx.Response(401)
        return httpx.Response(200, json={"ok": True})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SECRET = "s3cret:/x"


def _client(issuer: Issuer, clock: Clock, secret: str = SECRET) -> httpx.AsyncClient:
    auth = ClientCredentialsAuth(TOKEN_URL, client_id="worker", client_secret=secret, clock=clock)
    return httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle), auth=auth)


async def test_one_token_serves_many_requests_until_it_is_due() -> None:
    issuer, clock = Issuer(), Clock()
    async with _client(issuer, clock) as client:
        for _ in range(3):
            assert (await client.get("http://api.test/x")).status_code == 200
        assert issuer.issued == ["token-1"]
        clock.now += issuer.lifetime - REFRESH_MARGIN_SECONDS
        assert (await client.get("http://api.test/x")).status_code == 200
    assert issuer.issued == ["token-1", "token-2"]
    assert issuer.seen_tokens == ["token-1"] * 3 + ["token-2"]


async def test_a_rejected_token_is_replaced_once_and_the_request_retried() -> None:
    issuer, clock = Issuer(), Clock()
    async with _client(issuer, clock) as client:
        await client.get("http://api.test/x")
        issuer.revoked.add("token-1")
        response = await client.get("http://api.test/x")
    assert response.status_code == 200
    assert issuer.seen_tokens == ["token-1", "token-1", "token-2"]


async def test_a_wrong_secret_raises_instead_of_calling_without_a_token() -> None:
    issuer, clock = Issuer(), Clock()
    async with _client(issuer, clock, secret="wrong") as client:
        with pytest.raises(TokenUnavailable, match="401"):
            await client.get("http://api.test/x")
    assert issuer.seen_tokens == []
