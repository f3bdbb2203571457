"""Token verification: the checks every service relies on."""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt

from contracts.auth import CUSTOMER_SCOPES, PrincipalKind, Scope
from kit.auth import JwksKeySource, KeysStatus, TokenVerifier
from kit.errors import ServiceUnavailable, Unauthorized
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


class DecodeCounter:
    """Counts the signature checks (jose's `jwt.decode`) a verifier makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._decode = jose_jwt.decode
        monkeypatch.setattr(jose_jwt, "decode", self._counting)

    def _counting(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._decode(*args, **kwargs)


class WallClock:
    """The wall clock, moved on by hand (jose itself keeps reading the real one)."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_seconds


class TestVerifiedOnce:
    """A token is verified once per process while it is valid: its signature is not
    checked again, but its expiry and its key still are, on every request."""

    @pytest.fixture
    def decodes(self, monkeypatch: pytest.MonkeyPatch) -> DecodeCounter:
        return DecodeCounter(monkeypatch)

    async def test_the_same_token_is_verified_once(
        self, issuer: TestIssuer, decodes: DecodeCounter
    ) -> None:
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)
        first = await issuer.verifier.verify(token)
        again = await issuer.verifier.verify(token)
        assert again == first
        assert decodes.calls == 1

    async def test_never_used_past_the_tokens_expiry(
        self, issuer: TestIssuer, decodes: DecodeCounter
    ) -> None:
        clock = WallClock()
        verifier = TokenVerifier(
            issuer.key_source, issuer=issuer.issuer, audience=issuer.audience, clock=clock
        )
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)
        await verifier.verify(token)
        clock.offset_seconds = 900  # the token's lifetime
        await verifier.verify(token)
        assert decodes.calls == 2

    async def test_a_token_within_the_expiry_leeway_is_not_remembered(
        self, issuer: TestIssuer, decodes: DecodeCounter
    ) -> None:
        # jose accepts a token up to 5 s past its expiry; remembering it would stretch that.
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES, lifetime_seconds=-2)
        for _ in range(2):
            await issuer.verifier.verify(token)
        assert decodes.calls == 2

    async def test_a_token_before_its_not_before_is_not_remembered(
        self, issuer: TestIssuer, decodes: DecodeCounter
    ) -> None:
        not_before = int(time.time()) + 3  # within jose's leeway: accepted, not yet valid
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES, nbf=not_before)
        for _ in range(2):
            await issuer.verifier.verify(token)
        assert decodes.calls == 2

    async def test_a_removed_key_refuses_a_verified_token_at_once(self, issuer: TestIssuer) -> None:
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)
        await issuer.verifier.verify(token)
        issuer.key_source.replace({})
        with pytest.raises(Unauthorized):
            await issuer.verifier.verify(token)

    async def test_a_replaced_key_of_the_same_kid_verifies_again(
        self, issuer: TestIssuer, decodes: DecodeCounter
    ) -> None:
        token = issuer.token("cust-1", PrincipalKind.customer, CUSTOMER_SCOPES)
        await issuer.verifier.verify(token)
        other = SigningKey.generate().public_jwk()
        issuer.key_source.replace({issuer.key.kid: {**other, "kid": issuer.key.kid}})
        with pytest.raises(Unauthorized):
            await issuer.verifier.verify(token)
        assert decodes.calls == 2

    async def test_bounded(self, issuer: TestIssuer, decodes: DecodeCounter) -> None:
        verifier = TokenVerifier(
            issuer.key_source, issuer=issuer.issuer, audience=issuer.audience, verified_max=2
        )
        tokens = [issuer.token(f"c-{n}", PrincipalKind.customer, CUSTOMER_SCOPES) for n in range(3)]
        for token in tokens:
            await verifier.verify(token)
        await verifier.verify(tokens[2])  # still remembered
        assert decodes.calls == 3
        await verifier.verify(tokens[0])  # forgotten, the oldest, to make room
        assert decodes.calls == 4


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


class FakeIssuer:
    """The issuer's JWKS endpoint as an HTTP transport that a test turns up, down (the
    connection refused at once) or hanging (never answering), counting the fetches."""

    def __init__(self, *keys: SigningKey) -> None:
        self.published = [key.public_jwk() for key in keys]
        self.state = "up"
        self.fetches = 0
        self.transport = httpx.MockTransport(self._answer)

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.state == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.state == "hanging":
            # MockTransport ignores httpx's timeouts: only the key source's own bound ends it.
            await asyncio.Event().wait()
        return httpx.Response(200, json={"keys": self.published})

    def source(self, **bounds: float) -> JwksKeySource:
        return JwksKeySource("http://accounts.test/jwks", transport=self.transport, **bounds)


def status_of(source: JwksKeySource) -> KeysStatus:
    """The source's status now (a call, so mypy does not narrow it across awaits)."""
    return source.status


async def verified_within(verifier: TokenVerifier, token: str, bound_seconds: float) -> str:
    """The token's subject, verified within `bound_seconds` (else the test fails)."""
    principal = await asyncio.wait_for(verifier.verify(token), bound_seconds)
    return principal.subject


async def refused_within(verifier: TokenVerifier, token: str, bound_seconds: float) -> None:
    with pytest.raises(Unauthorized):
        await asyncio.wait_for(verifier.verify(token), bound_seconds)


class TestIssuerOutage:
    """An issuer that is down or hanging costs no request a wait: cached keys keep
    verifying, unknown kids are refused at once, and the issuer is retried in the
    background at most once per interval until it answers."""

    issuer = TestIssuer()
    # A key the issuer never published: its tokens name an unknown kid.
    stranger = SigningKey.generate()
    # A request that waited on a hanging fetch would wait this long: far above any bound.
    fetch_timeout_seconds = 30.0

    def token(self, key: SigningKey | None = None) -> str:
        return self.issuer.token("c", PrincipalKind.customer, CUSTOMER_SCOPES, key=key)

    def verifier(self, source: JwksKeySource) -> TokenVerifier:
        return TokenVerifier(source, issuer=self.issuer.issuer, audience=self.issuer.audience)

    async def test_known_kid_verifies_at_once_while_the_issuer_hangs(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        # Stale at once: every verification would like fresh keys.
        source = jwks.source(
            ttl_seconds=0,
            refetch_interval_seconds=0,
            timeout_seconds=self.fetch_timeout_seconds,
            refetch_wait_seconds=0.3,
        )
        verifier = self.verifier(source)
        try:
            assert await verified_within(verifier, self.token(), 5.0) == "c"
            jwks.state = "hanging"
            good = self.token()
            # The first waits for the refresh at most its bound (the issuer answered last
            # time, and a key it removed should stop verifying); the rest not at all.
            assert await verified_within(verifier, good, 2.0) == "c"
            for _ in range(20):
                assert await verified_within(verifier, good, 0.5) == "c"
            assert jwks.fetches == 2, "one background refresh, hanging, and no other"
        finally:
            await source.close()

    async def test_a_down_issuer_is_asked_at_most_once_per_interval(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        source = jwks.source(ttl_seconds=0, refetch_interval_seconds=60)
        verifier = self.verifier(source)
        try:
            assert await verified_within(verifier, self.token(), 5.0) == "c"
            jwks.state = "down"
            good, forged = self.token(), self.token(self.stranger)
            for _ in range(20):
                assert await verified_within(verifier, good, 0.5) == "c"
                await refused_within(verifier, forged, 0.5)
            assert jwks.fetches == 1, "the fetch that loaded the keys is the only one"
        finally:
            await source.close()

    async def test_unknown_kid_is_refused_at_once_while_the_issuer_is_away(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        source = jwks.source(
            refetch_interval_seconds=0,
            timeout_seconds=self.fetch_timeout_seconds,
            refetch_wait_seconds=0.3,
        )
        verifier = self.verifier(source)
        try:
            assert await verified_within(verifier, self.token(), 5.0) == "c"
            jwks.state = "hanging"
            # The first unknown kid waits for the refetch at most its bound: the issuer
            # answered last time, and a rotated key should work at once.
            await refused_within(verifier, self.token(self.stranger), 2.0)
            good, forged = self.token(), self.token(self.stranger)
            for _ in range(20):
                await refused_within(verifier, forged, 0.2)
                assert await verified_within(verifier, good, 0.2) == "c"
            assert jwks.fetches == 2, "the refetch still hangs; no second one beside it"
        finally:
            await source.close()

    async def test_a_returning_issuers_new_key_is_picked_up_within_the_interval(self) -> None:
        new_key = SigningKey.generate()
        jwks = FakeIssuer(self.issuer.key)
        interval_seconds = 0.3
        source = jwks.source(refetch_interval_seconds=interval_seconds)
        verifier = self.verifier(source)
        try:
            assert await verified_within(verifier, self.token(), 5.0) == "c"
            jwks.state = "down"
            deadline = time.monotonic() + 5.0
            while status_of(source) is not KeysStatus.cached:  # a refetch has failed
                await refused_within(verifier, self.token(new_key), 0.5)
                assert time.monotonic() < deadline, "no refetch failed"
                await asyncio.sleep(0.02)
            # The issuer comes back, signing with a new key; no request asks for it.
            jwks.published.append(new_key.public_jwk())
            jwks.state = "up"
            back_at = time.monotonic()
            while True:
                try:
                    assert await verified_within(verifier, self.token(new_key), 0.5) == "c"
                    break
                except Unauthorized:
                    waited_seconds = time.monotonic() - back_at
                    assert waited_seconds < interval_seconds + 1.0, "new key not picked up"
                    await asyncio.sleep(0.02)
            assert time.monotonic() - back_at < interval_seconds + 1.0
        finally:
            await source.close()

    async def test_no_keys_yet_is_unavailable_not_unauthorized(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        jwks.state = "down"
        source = jwks.source(refetch_interval_seconds=60)
        verifier = self.verifier(source)
        try:
            source.start()
            # The token may well be good: the caller should retry, not log in again.
            with pytest.raises(ServiceUnavailable) as raised:
                await asyncio.wait_for(verifier.verify(self.token()), 0.5)
            assert raised.value.headers["Retry-After"]
            assert status_of(source) is KeysStatus.not_loaded
            # A starting service retries sooner than the interval: the issuer usually
            # starts beside it.
            jwks.state = "up"
            deadline = time.monotonic() + 5.0
            while status_of(source) is not KeysStatus.ok:
                assert time.monotonic() < deadline, "the first keys never loaded"
                await asyncio.sleep(0.02)
            assert await verified_within(verifier, self.token(), 0.5) == "c"
        finally:
            await source.close()

    async def test_status_says_when_the_cached_keys_are_served(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        source = jwks.source(refetch_interval_seconds=0)
        try:
            assert status_of(source) is KeysStatus.not_loaded
            await source.keys()
            assert status_of(source) is KeysStatus.ok
            jwks.state = "down"
            await source.refresh()
            assert status_of(source) is KeysStatus.cached
        finally:
            await source.close()

    async def test_close_leaves_nothing_running(self) -> None:
        jwks = FakeIssuer(self.issuer.key)
        source = jwks.source(
            refetch_interval_seconds=0, timeout_seconds=30, refetch_wait_seconds=0.1
        )
        await source.keys()
        jwks.state = "hanging"
        await source.refresh()  # a refetch in flight (the request waited its bound)
        await source.close()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not [task for task in others if "jwks" in task.get_name()]
