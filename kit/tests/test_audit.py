"""The audit trail kit: exactly-once appends, a verifiable chain, an append-only table."""

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import Connection, MetaData, Table, text
from sqlalchemy.exc import DBAPIError

from contracts.audit import ActorType, AuditCheckpoint, AuditEventCreate, AuditVerification
from contracts.auth import PrincipalKind, Scope
from kit.audit import (
    ChainKeyMissing,
    add_hash_version,
    append,
    append_asyncpg,
    append_many,
    audit_router,
    audit_table,
    chain_hash,
    create_audit_objects,
    keyed_connection_class,
    publish_checkpoint,
    verify_chain,
)
from kit.audit_checkpoints import CheckpointDirectory, sign_checkpoint
from kit.db import Database
from kit.problems import install_problem_handlers
from kit.settings import to_asyncpg_url
from kit.testing import TestIssuer, app_client, assert_problem

TABLE: Table = audit_table(MetaData())
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


class _Operations:
    """Just enough of Alembic's `op` for `create_audit_objects` outside a migration."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get_bind(self) -> Connection:
        return self.connection

    def execute(self, statement: str) -> None:
        self.connection.execute(text(statement))


def _migrate(connection: Connection) -> None:
    create_audit_objects(_Operations(connection))
    add_hash_version(_Operations(connection))


@pytest.fixture
async def database(empty_database_url: str) -> AsyncIterator[Database]:
    database = Database(to_asyncpg_url(empty_database_url), pool_size=25, audit_chain_key=KEY)
    async with database.engine.begin() as connection:
        await connection.run_sync(_migrate)
    yield database
    await database.dispose()


def _event(**overrides: Any) -> AuditEventCreate:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "occurred_at": T0,
        "actor_id": "operator-1",
        "actor_type": ActorType.operator,
        "action": "account.frozen",
        "subject_type": "account",
        "subject_id": "acc-1",
        "account_ids": ["acc-1"],
        "before": {"status": "active"},
        "after": {"status": "frozen"},
        "outcome": "succeeded",
    }
    values.update(overrides)
    return AuditEventCreate(**values)


async def _append(database: Database, event: AuditEventCreate) -> bool:
    async with database.sessions() as session, session.begin():
        _values, written = await append(session, TABLE, event)
    return written


def _appends_timed(service: str) -> float:
    name = "sagabank_audit_append_duration_seconds_count"
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


class TestAppend:
    async def test_chain_links_each_event_to_the_previous(self, database: Database) -> None:
        for index in range(3):
            await _append(database, _event(occurred_at=T0 + timedelta(seconds=index)))
        async with database.sessions() as session:
            rows = (await session.execute(TABLE.select().order_by(TABLE.c.sequence))).all()
            verification = await verify_chain(session, TABLE, service="test")
        assert [row.sequence for row in rows] == [1, 2, 3]
        assert rows[0].previous_hash == "0" * 64
        assert rows[1].previous_hash == rows[0].hash
        assert rows[2].previous_hash == rows[1].hash
        assert verification.ok
        assert verification.events_checked == 3

    async def test_same_id_is_written_once(self, database: Database) -> None:
        event = _event()
        assert await _append(database, event) is True
        assert await _append(database, event) is False
        async with database.sessions() as session:
            count = (await session.execute(text("SELECT count(*) FROM audit_events"))).scalar()
        assert count == 1

    async def test_each_append_is_timed_under_its_service(
        self, database: Database, empty_database_url: str
    ) -> None:
        before = _appends_timed("sagabank"), _appends_timed("rawwriter")
        await _append(database, _event())
        await _append(database, _event())
        connection = await asyncpg.connect(
            empty_database_url, connection_class=keyed_connection_class(KEY, service="rawwriter")
        )
        try:
            async with connection.transaction():
                await append_asyncpg(connection, _event())
        finally:
            await connection.close()
        after = _appends_timed("sagabank"), _appends_timed("rawwriter")
        assert (after[0] - before[0], after[1] - before[1]) == (2, 1)

    async def test_raw_asyncpg_writers_extend_the_same_chain(
        self, database: Database, empty_database_url: str
    ) -> None:
        await _append(database, _event())
        raw_event = _event(before=None, after={"limit_minor": 500, "note": "ünïcode"})
        connection = await asyncpg.connect(
            empty_database_url, connection_class=keyed_connection_class(KEY, service="test")
        )
        try:
            for _ in range(2):  # a retried write is not written twice
                async with connection.transaction():
                    await append_asyncpg(connection, raw_event)
        finally:
            await connection.close()
        await _append(database, _event())
        async with database.sessions() as session:
            verification = await verify_chain(session, TABLE, service="test")
            stored = (await session.execute(TABLE.select().where(TABLE.c.id == raw_event.id))).one()
        assert verification.ok, verification
        assert verification.events_checked == 3
        assert stored.sequence == 2
        assert stored.after == {"limit_minor": 500, "note": "ünïcode"}

    async def test_concurrent_writers_keep_one_chain(self, database: Database) -> None:
        await asyncio.gather(*(_append(database, _event()) for _ in range(20)))
        async with database.sessions() as session:
            verification = await verify_chain(session, TABLE, service="test")
        assert verification.ok
        assert verification.events_checked == 20

    async def test_rolled_back_change_leaves_no_event(self, database: Database) -> None:
        class ChangeFailed(Exception):
            pass

        async def audited_change_that_fails() -> None:
            async with database.sessions() as session, session.begin():
                await append(session, TABLE, _event())
                raise ChangeFailed

        with pytest.raises(ChangeFailed):
            await audited_change_that_fails()
        async with database.sessions() as session:
            count = (await session.execute(text("SELECT count(*) FROM audit_events"))).scalar()
        assert count == 0


class TestAppendMany:
    async def test_in_order_each_id_once_one_chain(self, database: Database) -> None:
        known = _event(action="account.created")
        await _append(database, known)
        first, second = _event(action="account.frozen"), _event(action="account.unfrozen")
        async with database.sessions() as session, session.begin():
            results = await append_many(session, TABLE, [known, first, second, first])
        # A known id, also one repeated in the batch, is not written again.
        assert [written for _values, written in results] == [False, True, True, False]
        assert results[3][0]["hash"] == results[1][0]["hash"]
        async with database.sessions() as session:
            rows = (await session.execute(TABLE.select().order_by(TABLE.c.sequence))).all()
            verification = await verify_chain(session, TABLE, service="test")
        assert [(row.sequence, row.action) for row in rows] == [
            (1, "account.created"),
            (2, "account.frozen"),
            (3, "account.unfrozen"),
        ]
        assert verification.ok, verification
        assert verification.events_checked == 3

    async def test_same_chain_as_one_by_one(self, database: Database) -> None:
        events = [_event(occurred_at=T0 + timedelta(seconds=index)) for index in range(3)]
        async with database.sessions() as session, session.begin():
            batched = await append_many(session, TABLE, events, now=lambda: T0)
        async with database.sessions() as session, session.begin():
            await session.execute(text("SET LOCAL session_replication_role = replica"))
            await session.execute(text("DELETE FROM audit_events"))
        for event in events:
            async with database.sessions() as session, session.begin():
                await append(session, TABLE, event, now=lambda: T0)
        async with database.sessions() as session:
            rows = (await session.execute(TABLE.select().order_by(TABLE.c.sequence))).all()
        assert [row.hash for row in rows] == [values["hash"] for values, _ in batched]

    async def test_nothing_to_append(self, database: Database) -> None:
        async with database.sessions() as session, session.begin():
            assert await append_many(session, TABLE, []) == []


class TestTamperEvidence:
    @pytest.mark.parametrize("statement", [
        "UPDATE audit_events SET outcome = 'failed'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ])  # fmt: skip
    async def test_trigger_refuses(self, database: Database, statement: str) -> None:
        await _append(database, _event())
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as connection:
                await connection.execute(text(statement))

    async def test_verify_names_the_rewritten_event(self, database: Database) -> None:
        events = [_event(occurred_at=T0 + timedelta(seconds=index)) for index in range(5)]
        for event in events:
            await _append(database, event)
        async with database.engine.begin() as connection:
            # A superuser can bypass triggers; the chain still shows the rewrite.
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            await connection.execute(
                text('UPDATE audit_events SET after = \'{"status": "active"}\' WHERE id = :id'),
                {"id": events[2].id},
            )
        async with database.sessions() as session:
            verification = await verify_chain(session, TABLE, service="test")
        assert not verification.ok
        assert verification.first_broken_event_id == events[2].id
        assert verification.first_broken_sequence == 3
        assert verification.events_checked == 2


@pytest.fixture
def checkpoints(tmp_path: Path) -> CheckpointDirectory:
    return CheckpointDirectory(tmp_path / "checkpoints")


async def _publish(database: Database, checkpoints: CheckpointDirectory) -> AuditCheckpoint | None:
    return await publish_checkpoint(
        database, service="test", checkpoints=checkpoints, now=lambda: T0 + timedelta(hours=3)
    )


async def _verify(
    database: Database, checkpoints: CheckpointDirectory | None = None
) -> AuditVerification:
    async with database.sessions() as session:
        return await verify_chain(session, TABLE, service="test", checkpoints=checkpoints)


async def _as_owner(database: Database, statement: str, **params: Any) -> None:
    """What the database's owner can do behind the triggers' back."""
    async with database.engine.begin() as connection:
        await connection.execute(text("SET LOCAL session_replication_role = replica"))
        await connection.execute(text(statement), params)


async def _rewrite_chain(database: Database, *, key: bytes | None) -> None:
    """Recompute every event's link as a forger would: with `key` (not the chain's), or
    as a chain of plain SHA-256 (hash version 1), the content unchanged."""
    async with database.sessions() as session:
        rows = [dict(row._mapping) for row in (await session.execute(
            TABLE.select().order_by(TABLE.c.sequence))).all()]  # fmt: skip
    previous = "0" * 64
    for values in rows:
        fields = {name: values[name] for name in _HASHED}
        link = chain_hash(previous, fields, key=key)
        await _as_owner(
            database,
            "UPDATE audit_events SET previous_hash = :previous, hash = :link, "
            "hash_version = :version WHERE sequence = :sequence",
            previous=previous, link=link, version=1 if key is None else 2,
            sequence=values["sequence"],
        )  # fmt: skip
        previous = link


_HASHED = (
    "sequence", "id", "occurred_at", "recorded_at", "actor_id", "actor_type", "action",
    "subject_type", "subject_id", "transfer_id", "account_ids", "workflow_id", "run_id",
    "request_id", "before", "after", "outcome", "compensates",
)  # fmt: skip


class TestKeyedChain:
    async def test_events_are_keyed(self, database: Database) -> None:
        await _append(database, _event())
        async with database.sessions() as session:
            row = (await session.execute(TABLE.select())).one()
        fields = {name: getattr(row, name) for name in _HASHED}
        assert row.hash_version == 2
        assert row.hash == chain_hash("0" * 64, fields, key=KEY)
        assert row.hash != chain_hash("0" * 64, fields)

    async def test_rewriting_the_whole_chain_without_the_key_is_found(
        self, database: Database
    ) -> None:
        for index in range(3):
            await _append(database, _event(occurred_at=T0 + timedelta(seconds=index)))
        await _rewrite_chain(database, key=b"not the chain key, 32 bytes long")
        verification = await _verify(database)
        assert not verification.ok
        assert verification.first_broken_sequence == 1
        assert verification.reason == "the event's content does not match its hash"

    async def test_an_unkeyed_event_after_keyed_ones_is_found(self, database: Database) -> None:
        for _ in range(2):
            await _append(database, _event())
        async with database.sessions() as session:
            last = (await session.execute(TABLE.select().where(TABLE.c.sequence == 2))).one()
        fields = {name: getattr(last, name) for name in _HASHED}
        await _as_owner(
            database,
            "UPDATE audit_events SET after = NULL, hash = :link, hash_version = 1 "
            "WHERE sequence = 2",
            link=chain_hash(last.previous_hash, {**fields, "after": None}),
        )
        verification = await _verify(database)
        assert not verification.ok
        assert verification.first_broken_sequence == 2
        assert verification.reason == (
            "an unkeyed hash after keyed ones: the chain was rewritten without its key"
        )

    async def test_a_chain_rewritten_as_unkeyed_is_found_by_its_checkpoint(
        self, database: Database, checkpoints: CheckpointDirectory
    ) -> None:
        for _ in range(3):
            await _append(database, _event())
        await _publish(database, checkpoints)
        await _rewrite_chain(database, key=None)  # a valid chain of the old kind...
        verification = await _verify(database, checkpoints)
        assert not verification.ok  # ...but not the one the checkpoint saw
        assert verification.first_broken_sequence == 3
        assert verification.reason == (
            "the event is not the one checkpointed at 2026-11-28T15:00:00+00:00"
        )

    async def test_events_written_before_keying_still_verify(self, empty_database_url: str) -> None:
        database = Database(to_asyncpg_url(empty_database_url), audit_chain_key=KEY)
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(lambda sync: create_audit_objects(_Operations(sync)))
                previous = "0" * 64
                for sequence in (1, 2):  # as the unkeyed code wrote them
                    values = {**_event().model_dump(), "actor_type": "operator",
                              "sequence": sequence, "recorded_at": T0}  # fmt: skip
                    link = chain_hash(previous, {name: values[name] for name in _HASHED})
                    legacy = audit_table(MetaData())
                    legacy_columns = [c for c in legacy.c if c.name != "hash_version"]
                    row = {**values, "previous_hash": previous, "hash": link}
                    await connection.execute(
                        legacy.insert().values({c: row[c.name] for c in legacy_columns})
                    )
                    previous = link
                await connection.run_sync(lambda sync: add_hash_version(_Operations(sync)))
            await _append(database, _event())
            async with database.sessions() as session:
                versions = (await session.execute(TABLE.select().order_by(TABLE.c.sequence))).all()
            verification = await _verify(database)
        finally:
            await database.dispose()
        assert [row.hash_version for row in versions] == [1, 1, 2]
        assert verification.ok, verification
        assert verification.events_checked == 3

    async def test_a_writer_without_the_key_writes_nothing(self, empty_database_url: str) -> None:
        unkeyed = Database(to_asyncpg_url(empty_database_url))
        try:
            with pytest.raises(ChainKeyMissing):
                await _append(unkeyed, _event())
        finally:
            await unkeyed.dispose()


class TestCheckpoints:
    async def test_verify_names_the_events_missing_after_the_last_checkpoint(
        self, database: Database, checkpoints: CheckpointDirectory
    ) -> None:
        for index in range(5):
            await _append(database, _event(occurred_at=T0 + timedelta(seconds=index)))
        published = await _publish(database, checkpoints)
        assert published is not None
        assert published.sequence == 5
        await _as_owner(database, "DELETE FROM audit_events WHERE sequence > 3")
        verification = await _verify(database, checkpoints)
        assert not verification.ok
        assert verification.events_checked == 3
        assert (verification.missing_from_sequence, verification.missing_to_sequence) == (4, 5)
        assert verification.first_broken_sequence == 4
        assert verification.checkpoint_sequence == 5
        assert verification.reason == (
            "events 4..5 are missing: the checkpoint of 2026-11-28T15:00:00+00:00 saw them"
        )
        # Nor does the publisher sign the shorter chain as if nothing had happened.
        assert await _publish(database, checkpoints) is None

    async def test_one_checkpoint_per_head(
        self, database: Database, checkpoints: CheckpointDirectory
    ) -> None:
        assert await _publish(database, checkpoints) is None  # an empty chain has no head
        await _append(database, _event())
        assert await _publish(database, checkpoints) is not None
        assert await _publish(database, checkpoints) is None  # the head did not move
        await _append(database, _event())
        assert await _publish(database, checkpoints) is not None
        assert sorted(path.name for path in checkpoints.path.iterdir()) == [
            f"{sequence:020d}.json" for sequence in (1, 2)
        ]
        assert (await _verify(database, checkpoints)).ok

    async def test_a_checkpoint_not_signed_with_the_chain_key_is_refused(
        self, database: Database, checkpoints: CheckpointDirectory
    ) -> None:
        for _ in range(2):
            await _append(database, _event())
        async with database.sessions() as session:
            head = (await session.execute(TABLE.select().where(TABLE.c.sequence == 2))).one()
        forged = sign_checkpoint(
            b"x" * 32, service="test", sequence=2, head_hash=head.hash, published_at=T0
        )
        checkpoints.publish(forged)
        verification = await _verify(database, checkpoints)
        assert not verification.ok
        assert verification.reason == "the checkpoint of sequence 2 is not signed by this service"


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
async def client(
    database: Database, issuer: TestIssuer, checkpoints: CheckpointDirectory
) -> AsyncIterator[httpx.AsyncClient]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = database
        app.state.token_verifier = issuer.verifier
        app.state.audit_checkpoints = checkpoints
        yield

    app = FastAPI(lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(audit_router(service="test", table=TABLE))
    async with app_client(app) as client:
        yield client


def _reader(issuer: TestIssuer) -> dict[str, str]:
    return issuer.headers("auditor-1", PrincipalKind.operator, {Scope.audit_read})


class TestAuditApi:
    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        for path in ("", "/verify", "/export"):
            response = await client.get(f"/v1/admin/audit-events{path}")
            assert response.status_code == 401

    async def test_missing_scope(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        for path in ("", "/verify", "/export"):
            response = await client.get(
                f"/v1/admin/audit-events{path}", headers=issuer.customer("cust-1")
            )
            assert response.status_code == 403

    async def test_filters_and_pages(
        self, client: httpx.AsyncClient, issuer: TestIssuer, database: Database
    ) -> None:
        transfer_id = uuid.uuid4()
        for index in range(5):
            await _append(database, _event(transfer_id=transfer_id, action=f"step.{index}"))
        await _append(database, _event(actor_id="someone-else"))
        first = await client.get(
            "/v1/admin/audit-events",
            params={"transfer_id": str(transfer_id), "limit": 3},
            headers=_reader(issuer),
        )
        assert first.status_code == 200, first.text
        second = await client.get(
            "/v1/admin/audit-events",
            params={"transfer_id": str(transfer_id), "cursor": first.json()["next_cursor"]},
            headers=_reader(issuer),
        )
        actions = [item["action"] for item in first.json()["items"] + second.json()["items"]]
        assert actions == [f"step.{index}" for index in range(5)]
        assert second.json()["next_cursor"] is None
        by_actor = await client.get(
            "/v1/admin/audit-events", params={"actor_id": "someone-else"},
            headers=_reader(issuer),
        )  # fmt: skip
        assert [item["actor_id"] for item in by_actor.json()["items"]] == ["someone-else"]

    @pytest.mark.parametrize("position", ["seq:-1", "seq: 1", "seq:1_0", "entry:1", "garbage"])
    async def test_a_cursor_it_did_not_issue_is_refused(
        self, client: httpx.AsyncClient, issuer: TestIssuer, position: str
    ) -> None:
        cursor = base64.urlsafe_b64encode(position.encode()).decode()
        response = await client.get(
            "/v1/admin/audit-events", params={"cursor": cursor}, headers=_reader(issuer)
        )
        assert_problem(response, 422, "invalid-cursor")

    async def test_limit_is_capped(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        response = await client.get(
            "/v1/admin/audit-events", params={"limit": 501}, headers=_reader(issuer)
        )
        assert response.status_code == 422

    async def test_verify_and_export(
        self,
        client: httpx.AsyncClient,
        issuer: TestIssuer,
        database: Database,
        checkpoints: CheckpointDirectory,
    ) -> None:
        for index in range(3):
            await _append(database, _event(occurred_at=T0 + timedelta(hours=index)))
        await _publish(database, checkpoints)
        verification = await client.get("/v1/admin/audit-events/verify", headers=_reader(issuer))
        assert verification.json() == {
            "service": "test", "events_checked": 3, "ok": True,
            "first_broken_event_id": None, "first_broken_sequence": None, "reason": None,
            "checkpoint_sequence": 3, "checkpoint_published_at": "2026-11-28T15:00:00Z",
            "missing_from_sequence": None, "missing_to_sequence": None,
        }  # fmt: skip
        export = await client.get(
            "/v1/admin/audit-events/export",
            params={"since": (T0 + timedelta(minutes=30)).isoformat()},
            headers=_reader(issuer),
        )
        assert export.headers["content-type"].startswith("application/x-ndjson")
        lines = export.text.strip().splitlines()
        assert len(lines) == 2


def test_hash_ignores_key_order_and_time_zone() -> None:
    fields = {"b": 1, "a": [uuid.UUID(int=1)], "t": T0}
    same = {"t": T0.astimezone(timezone(timedelta(hours=2))), "a": [uuid.UUID(int=1)], "b": 1}
    assert chain_hash("0" * 64, fields) == chain_hash("0" * 64, same)
    assert chain_hash("0" * 64, fields) != chain_hash("0" * 64, {**fields, "b": 2})
