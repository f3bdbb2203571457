"""Signing keys: loaded from a directory, all published, one signing; rotated without a
token refused on the way, as another service sees it through the JWKS."""

import base64
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from fastapi import FastAPI
from jose import jwt

from accounts.config import BootstrapClient, Settings
from accounts.identity.keys import SigningKeysError, load_signing_keys
from accounts.tests.helpers import Clock, accounts_app, raw_connection, write_signing_key
from contracts.auth import (
    JWKS_PATH,
    TOKEN_ISSUER_DEFAULT,
    WORKER_SCOPES,
    PrincipalKind,
    ServiceAudience,
    audiences_of,
)
from kit.auth import JwksKeySource, TokenVerifier
from kit.errors import Unauthorized
from kit.testing import app_client
from kit.token_signing import SigningKey, mint_token

WORKER_ID = "sagabank-worker"
WORKER_SECRET = "worker-secret-for-rotation"
WORKER = BootstrapClient.model_validate(
    {
        "client_id": WORKER_ID,
        "client_secret": WORKER_SECRET,
        "kind": "service",
        "scopes": sorted(WORKER_SCOPES),
    }
)


@pytest.fixture(scope="module")
def old_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def new_key() -> SigningKey:
    return SigningKey.generate()


class TestLoading:
    def test_a_key_file_is_parsed_once_per_content(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Every accounts app loads the directory again; parsing checks the RSA key (~40 ms).
        parsed: list[bytes] = []
        parse = serialization.load_pem_private_key

        def counting(data: bytes, password: bytes | None) -> PrivateKeyTypes:
            parsed.append(data)
            return parse(data, password)

        monkeypatch.setattr(serialization, "load_pem_private_key", counting)
        first, second = SigningKey.generate(), SigningKey.generate()
        write_signing_key(tmp_path, "only", first)

        loaded = [load_signing_keys(tmp_path, active=None).active.kid for _ in range(3)]
        write_signing_key(tmp_path, "only", second)
        rewritten = load_signing_keys(tmp_path, active=None).active.kid

        assert loaded == [first.kid] * 3
        assert rewritten == second.kid
        assert parsed == [first.private_pem, second.private_pem]

    def test_one_key_needs_no_name(self, tmp_path: Path, old_key: SigningKey) -> None:
        write_signing_key(tmp_path, "only", old_key)
        keys = load_signing_keys(tmp_path, active=None)
        assert keys.active.kid == old_key.kid
        assert [key["kid"] for key in keys.jwks()["keys"]] == [old_key.kid]

    def test_every_key_is_published_one_signs(
        self, tmp_path: Path, old_key: SigningKey, new_key: SigningKey
    ) -> None:
        write_signing_key(tmp_path, "old", old_key)
        write_signing_key(tmp_path, "new", new_key)
        keys = load_signing_keys(tmp_path, active="new")
        assert keys.active.kid == new_key.kid
        assert {key["kid"] for key in keys.jwks()["keys"]} == {old_key.kid, new_key.kid}

    @pytest.mark.parametrize(
        ("files", "active", "message"),
        [
            ([], None, "no *.pem key"),
            (["old", "new"], None, "name the signing one"),
            (["old"], "new", "'new' is not in"),
        ],
        ids=["empty", "ambiguous", "missing-active"],
    )
    def test_refused(
        self,
        tmp_path: Path,
        old_key: SigningKey,
        new_key: SigningKey,
        files: list[str],
        active: str | None,
        message: str,
    ) -> None:
        for name, key in zip(files, (old_key, new_key), strict=False):
            write_signing_key(tmp_path, name, key)
        with pytest.raises(SigningKeysError, match=re.escape(message)):
            load_signing_keys(tmp_path, active=active)

    def test_not_a_key(self, tmp_path: Path) -> None:
        (tmp_path / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
        with pytest.raises(SigningKeysError, match=r"broken\.pem is not"):
            load_signing_keys(tmp_path, active=None)

    def test_no_directory(self, tmp_path: Path) -> None:
        with pytest.raises(SigningKeysError, match="ACCOUNTS_SIGNING_KEYS_DIR"):
            load_signing_keys(None, active=None)
        with pytest.raises(SigningKeysError, match="does not exist"):
            load_signing_keys(tmp_path / "missing", active=None)

    def test_the_service_does_not_start_without_a_key(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        with pytest.raises(SigningKeysError):
            accounts_app(settings.model_copy(update={"signing_keys_dir": tmp_path}))
        with pytest.raises(SigningKeysError):
            accounts_app(settings.model_copy(update={"signing_keys_dir": None}))


class SwitchableTransport(httpx.AsyncBaseTransport):
    """Another service's view of the issuer: whichever accounts process runs now. Counts
    the JWKS fetches."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.jwks_fetches = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None, "no issuer running"
        if request.url.path == JWKS_PATH:
            self.jwks_fetches += 1
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


class Rotation:
    def __init__(self, settings: Settings, keys_dir: Path, clock: Clock) -> None:
        self.settings = settings
        self.keys_dir = keys_dir
        self.clock = clock
        self.transport = SwitchableTransport()

    @asynccontextmanager
    async def issuer(self, active: str | None) -> AsyncIterator[httpx.AsyncClient]:
        """The accounts service (re)started on the key directory as it is now."""
        settings = self.settings.model_copy(
            update={
                "signing_keys_dir": self.keys_dir,
                "signing_key_active": active,
                "bootstrap_clients": [WORKER],
            }
        )
        app = accounts_app(settings, clock=self.clock)
        async with app_client(app) as client:
            self.transport.app = app
            try:
                yield client
            finally:
                self.transport.app = None


async def worker_token(http: httpx.AsyncClient) -> str:
    pair = base64.b64encode(f"{WORKER_ID}:{WORKER_SECRET}".encode()).decode()
    response = await http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {pair}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def accepted_by_accounts(http: httpx.AsyncClient, token: str) -> bool:
    """Whether the accounts service lets the token through (to a 404: no such account)."""
    response = await http.get(
        f"/v1/accounts/{uuid.UUID(int=0)}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code in (401, 404), response.text
    return response.status_code == 404


async def accepted_elsewhere(verifier: TokenVerifier, token: str) -> bool:
    try:
        await verifier.verify(token)
    except Unauthorized:
        return False
    return True


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


class TestRotation:
    async def test_no_token_is_refused_on_the_way(
        self,
        settings: Settings,
        database_url: str,
        clock: Clock,
        tmp_path: Path,
        old_key: SigningKey,
        new_key: SigningKey,
    ) -> None:
        keys_dir = tmp_path / "keys"
        keys_dir.mkdir()
        write_signing_key(keys_dir, "old", old_key)
        rotation = Rotation(settings, keys_dir, clock)
        # Another service: JWKS cached for 5 minutes, refetched at once on an unknown kid.
        source = JwksKeySource(
            f"http://accounts{JWKS_PATH}",
            ttl_seconds=300,
            refetch_interval_seconds=0,
            transport=rotation.transport,
        )
        elsewhere = TokenVerifier(
            source, issuer=TOKEN_ISSUER_DEFAULT, audience=ServiceAudience.transactions
        )
        try:
            # Before: one key, signing.
            async with rotation.issuer(active=None) as http:
                old_token = await worker_token(http)
                assert kid_of(old_token) == old_key.kid
                assert await accepted_elsewhere(elsewhere, old_token)
                fetches = rotation.transport.jwks_fetches

            # Step 1: the new key is published, the old one still signs.
            write_signing_key(keys_dir, "new", new_key)
            async with rotation.issuer(active="old") as http:
                published = (await http.get(JWKS_PATH)).json()["keys"]
                assert {key["kid"] for key in published} == {old_key.kid, new_key.kid}
                assert kid_of(await worker_token(http)) == old_key.kid

            # Step 2: the new key signs. Its tokens work at once, also where the old JWKS
            # is still cached (one refetch for the unknown kid); the old key's tokens
            # keep working until they expire.
            async with rotation.issuer(active="new") as http:
                new_token = await worker_token(http)
                assert kid_of(new_token) == new_key.kid
                assert await accepted_by_accounts(http, new_token)
                assert await accepted_elsewhere(elsewhere, new_token)
                assert rotation.transport.jwks_fetches == fetches + 1
                assert await accepted_by_accounts(http, old_token)
                assert await accepted_elsewhere(elsewhere, old_token)
                expired = mint_token(
                    old_key,
                    subject=WORKER_ID,
                    kind=PrincipalKind.service,
                    scopes={str(scope) for scope in WORKER_SCOPES},
                    issuer=TOKEN_ISSUER_DEFAULT,
                    audience=audiences_of(WORKER_SCOPES),
                    lifetime_seconds=-60,
                )
                assert not await accepted_by_accounts(http, expired)
                assert not await accepted_elsewhere(elsewhere, expired)

            # Step 3, after the access-token lifetime: the old key is removed. The issuer
            # refuses its tokens at once; other services once their JWKS cache expires.
            (keys_dir / "old.pem").unlink()
            async with rotation.issuer(active=None) as http:
                published = (await http.get(JWKS_PATH)).json()["keys"]
                assert [key["kid"] for key in published] == [new_key.kid]
                assert not await accepted_by_accounts(http, old_token)
                assert await accepted_by_accounts(http, new_token)
                source.ttl_seconds = 0  # the cache's time is up
                assert not await accepted_elsewhere(elsewhere, old_token)
                assert await accepted_elsewhere(elsewhere, new_token)
        finally:
            await source.close()

        async with raw_connection(database_url) as connection:
            activations = await connection.fetch(
                "SELECT subject_id, actor_type, before FROM audit_events"
                " WHERE action = 'signing_key.activated' ORDER BY sequence"
            )
        # Recorded when the signing key changed, not on every start.
        assert [row["subject_id"] for row in activations] == [old_key.kid, new_key.kid]
        assert {row["actor_type"] for row in activations} == {"system"}
        assert activations[1]["before"] == f'{{"kid": "{old_key.kid}"}}'
