"""/readyz against the schema: ready at or ahead of this release's head, not ready behind it.

`two_revisions/` is a history of two migrations (0001, 0002) standing in for a release's.
"""

import asyncio
import base64
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from alembic import command
from fastapi import APIRouter, Depends
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.auth import CUSTOMER_SCOPES, PrincipalKind
from contracts.common import MigrationsCheck
from kit.app import create_service_app
from kit.auth import KeysStatus, Principal, authenticate
from kit.migrations import (
    ReleaseRevisions,
    alembic_config,
    compare_schema,
    release_revisions,
    upgrade_to_head,
)
from kit.settings import ServiceSettings, to_asyncpg_url
from kit.testing import TestIssuer, app_client

DatabaseFactory = Callable[[Path], Awaitable[str]]

MIGRATIONS_PATH = Path(__file__).parent / "two_revisions"
NEWER_REVISION = "ffff_newer"
# Minted at import: it must outlive the whole suite, which takes longer than the
# 15 minutes a token lives by default.
_IMPORT_TOKEN_LIFETIME_SECONDS = 24 * 3600
_TOKEN = TestIssuer().token(
    "c", PrincipalKind.customer, CUSTOMER_SCOPES, lifetime_seconds=_IMPORT_TOKEN_LIFETIME_SECONDS
)
CHAIN_KEY = base64.b64encode(b"r" * 32).decode()


class _Settings(ServiceSettings):
    # A prefix of its own, so that no variable of the environment leaks into the test.
    model_config = SettingsConfigDict(env_prefix="READINESS_TEST_")


async def _readyz(database_url: str) -> httpx.Response:
    app = create_service_app(
        service="readiness",
        title="readiness",
        description="a service with no routes",
        version="0",
        settings=_Settings(
            database_url=database_url, log_json=True, audit_chain_key=SecretStr(CHAIN_KEY)
        ),
        migrations_path=MIGRATIONS_PATH,
        routers=[],
    )
    async with app_client(app) as client:
        first = await client.get("/readyz")
        second = await client.get("/readyz")
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    return first


async def _stamp(database_url: str, revision: str) -> None:
    """Write `revision` into alembic_version as a later release's migration Job would."""
    engine = create_async_engine(to_asyncpg_url(database_url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
            )
    finally:
        await engine.dispose()


async def _current_revisions(database_url: str) -> list[str]:
    engine = create_async_engine(to_asyncpg_url(database_url))
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return sorted(result.scalars())
    finally:
        await engine.dispose()


def _logged_events(stderr: str, event: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


class TestReadyz:
    async def test_ready_at_head(self, database_factory: DatabaseFactory) -> None:
        response = await _readyz(await database_factory(MIGRATIONS_PATH))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ready"
        assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}

    async def test_ready_when_the_database_is_newer(
        self,
        database_factory: DatabaseFactory,
        database_admin_url: Callable[[str], str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # A later release's migration Job has run: this (older) pod must keep serving.
        url = await database_factory(MIGRATIONS_PATH)
        await _stamp(database_admin_url(url), NEWER_REVISION)

        response = await _readyz(url)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ready"
        assert response.json()["checks"] == {"database": "ok", "migrations": "ahead"}
        warnings = _logged_events(capsys.readouterr().err, "migrations.database_ahead")
        assert len(warnings) == 1, warnings  # two probes, one warning
        assert warnings[0]["database_revisions"] == [NEWER_REVISION]
        assert warnings[0]["release_heads"] == ["0002"]
        assert warnings[0]["level"] == "warning"

    async def test_not_ready_when_the_database_is_older(
        self, database_factory: DatabaseFactory, database_admin_url: Callable[[str], str]
    ) -> None:
        url = await database_factory(MIGRATIONS_PATH)
        admin_url = database_admin_url(url)
        await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS_PATH, admin_url), "-1")

        response = await _readyz(url)

        assert response.status_code == 503, response.text
        assert response.json()["status"] == "not_ready"
        assert response.json()["checks"] == {"database": "ok", "migrations": "behind"}

    async def test_not_ready_when_never_migrated(self, empty_database_url: str) -> None:
        response = await _readyz(empty_database_url)

        assert response.status_code == 503, response.text
        assert response.json()["checks"] == {"database": "ok", "migrations": "behind"}

    async def test_not_ready_before_the_issuers_keys_load(
        self, database_factory: DatabaseFactory
    ) -> None:
        # Nothing listens on the issuer's port: no key could load, no token could verify.
        issuer_url = f"http://127.0.0.1:{_free_port()}/.well-known/jwks.json"
        settings = _Settings(
            database_url=await database_factory(MIGRATIONS_PATH),
            auth_jwks_url=issuer_url,
            log_json=True,
            audit_chain_key=SecretStr(CHAIN_KEY),
        )
        app = create_service_app(
            service="readiness",
            title="readiness",
            description="a service with one protected route",
            version="0",
            settings=settings,
            migrations_path=MIGRATIONS_PATH,
            routers=[_protected_router()],
        )
        async with app_client(app) as client:
            ready = await client.get("/readyz")
            protected = await client.get("/whoami", headers={"Authorization": f"Bearer {_TOKEN}"})
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["keys"] == KeysStatus.not_loaded
        # The token may be good: the caller is told to retry, not to log in again.
        assert protected.status_code == 503, protected.text
        assert protected.headers["Retry-After"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _protected_router() -> APIRouter:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> str:
        return principal.subject

    return router


class TestMigrateJob:
    async def test_a_newer_database_is_left_alone(
        self, database_factory: DatabaseFactory, database_admin_url: Callable[[str], str]
    ) -> None:
        # A rollback re-runs the previous release's migration Job: it must succeed and keep
        # the newer schema, or the rollback stops at its Job.
        url = database_admin_url(await database_factory(MIGRATIONS_PATH))
        await _stamp(url, NEWER_REVISION)

        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, url)

        assert await _current_revisions(url) == [NEWER_REVISION]

    async def test_an_older_database_is_upgraded(
        self, database_factory: DatabaseFactory, database_admin_url: Callable[[str], str]
    ) -> None:
        url = database_admin_url(await database_factory(MIGRATIONS_PATH))
        await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS_PATH, url), "-1")

        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, url)

        assert await _current_revisions(url) == ["0002"]


# A release with two branches: a1 -> a2 and b1 -> b2 (two rows in alembic_version at head).
BRANCHED = ReleaseRevisions(
    heads=frozenset({"a2", "b2"}), known=frozenset({"a1", "a2", "b1", "b2"})
)


class TestCompareSchema:
    @pytest.mark.parametrize(
        ("database_revisions", "expected"),
        [
            (["a2", "b2"], MigrationsCheck.ok),
            ([], MigrationsCheck.behind),
            (["a1", "b2"], MigrationsCheck.behind),
            # One branch applied, the other never was.
            (["a2"], MigrationsCheck.behind),
            # A newer release merged our branches, or moved one on.
            ([NEWER_REVISION], MigrationsCheck.ahead),
            (["a2", NEWER_REVISION], MigrationsCheck.ahead),
            # Newer on one branch is no excuse for older on another.
            (["a1", NEWER_REVISION], MigrationsCheck.behind),
        ],
    )
    def test_branches(self, database_revisions: list[str], expected: MigrationsCheck) -> None:
        assert compare_schema(database_revisions, BRANCHED) is expected

    def test_the_release_history_is_read_once(self) -> None:
        first = release_revisions(MIGRATIONS_PATH)
        assert first == ReleaseRevisions(
            heads=frozenset({"0002"}), known=frozenset({"0001", "0002"})
        )
        assert release_revisions(MIGRATIONS_PATH) is first
