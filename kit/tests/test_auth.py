"""Token verification: the checks every service relies on."""

import json

import httpx
import pytest

from contracts.auth import CUSTOMER_SCOPES, PrincipalKind, Scope
from kit.auth import JwksKeySource, TokenVerifier
from kit.errors import Unauthorized
from kit.testing import TestIssuer
from kit.token_signing import SigningKey


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


async def test_valid_token_names_the_principal(issuer: TestIssuer) -> None:
    token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)
    principal = await issuer.verifier.verify(token)
    assert principal.subject == "cust-1"
    assert principal.kind is PrincipalKind.customer
    assert principal.customer_id == "cust-1"
    assert principal.has(Scope.transfers_write)
    assert not principal.has(Scope.audit_read)


@pytest.mark.parametrize(
    "attack",
    [
        "malformed",
        "expired",
        "alg-none",
        "hs256-with-public-key",
        "wrong-audience",
        "wrong-issuer",
        "no-exp",
        "unknown-kid",
        "tampered-payload",
    ],
)
async def test_forgery_is_refused(issuer: TestIssuer, attack: str) -> None:
    headers = issuer.forgeries("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)[attack]
    token = headers["Authorization"].removeprefix("Bearer ")
    with pytest.raises(Unauthorized):
        await issuer.verifier.verify(token)


async def test_token_without_kind_is_refused(issuer: TestIssuer) -> None:
    token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES, sbk_kind=None)
    with pytest.raises(Unauthorized):
        await issuer.verifier.verify(token)


class TestKeyRotation:
    """A new key works as soon as the JWKS publishes it; a removed key stops working."""

    async def test_rotation(self) -> None:
        old, new = SigningKey.generate(), SigningKey.generate()
        published = {"keys": [old.public_jwk()]}
        fetches: list[httpx.URL] = []

        def jwks(request: httpx.Request) -> httpx.Response:
            fetches.append(request.url)
            return httpx.Response(200, content=json.dumps(published))

        source = JwksKeySource(
            "http://accounts.test/.well-known/jwks.json",
            refetch_interval_seconds=0,
            transport=httpx.MockTransport(jwks),
        )
        issuer = TestIssuer()
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        old_token = issuer.token("c", PrincipalKind.customer, CUSTOMER_SCOPES, key=old)
        assert (await verifier.verify(old_token)).subject == "c"

        # The issuer publishes the new key beside the old one, then signs with it:
        # the unknown kid makes the verifier refetch, and the new token works at once.
        published["keys"] = [old.public_jwk(), new.public_jwk()]
        new_token = issuer.token("c", PrincipalKind.customer, CUSTOMER_SCOPES, key=new)
        assert (await verifier.verify(new_token)).subject == "c"
        assert (await verifier.verify(old_token)).subject == "c"

        # Once the old key is removed (its tokens have expired), its tokens fail.
        published["keys"] = [new.public_jwk()]
        await source.refresh()
        with pytest.raises(Unauthorized):
            await verifier.verify(old_token)
        await source.close()

    async def test_unknown_kids_do_not_hammer_the_issuer(self) -> None:
        calls = 0

        def jwks(_request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            return httpx.Response(200, json={"keys": []})

        source = JwksKeySource(
            "http://accounts.test/jwks",
            refetch_interval_seconds=60,
            transport=httpx.MockTransport(jwks),
        )
        issuer = TestIssuer()
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        for _ in range(20):
            token = issuer.token(
                "c", PrincipalKind.customer, CUSTOMER_SCOPES, key=SigningKey.generate()
            )
            with pytest.raises(Unauthorized):
                await verifier.verify(token)
        assert calls == 1
        await source.close()
