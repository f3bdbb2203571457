"""Scoring reads only the fraud database, through indexes: no query on the scoring path
may need a sequential scan, whatever the tables grow to."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from fraud import repository
from fraud.main import MIGRATIONS_PATH
from fraud.models import OutcomeRow, ScoreRow
from kit.settings import to_asyncpg_url

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def connection(database_factory: object) -> AsyncIterator[AsyncConnection]:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    engine = create_async_engine(to_asyncpg_url(url))
    try:
        async with engine.connect() as connection:
            # With sequential scans priced out, the planner still picks one where no index
            # can serve the query: exactly what this test looks for.
            await connection.execute(text("SET enable_seqscan = off"))
            yield connection
    finally:
        await engine.dispose()


async def _plan(connection: AsyncConnection, statement: Select[object]) -> str:
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    rows = await connection.execute(text(f"EXPLAIN {compiled}"))
    return "\n".join(str(row[0]) for row in rows)


async def test_features_query_uses_indexes_only(connection: AsyncConnection) -> None:
    parameters = repository.features_parameters(
        source_account_id=uuid.uuid4(),
        target_account_id=uuid.uuid4(),
        currency="EUR",
        round_multiple_minor=1_000_00,
        now=NOW,
    )
    plan = await _plan(connection, repository.FEATURES.params(parameters))
    assert "Seq Scan" not in plan, plan
    for index in (
        "ix_scores_source_account_id_created_at",
        "ix_outcomes_source_account_id_occurred_at",
        "ix_outcomes_completed_source_account_id_target_account_id",
        "account_features_pkey",
        "denied_accounts_pkey",
    ):
        assert index in plan, plan


async def test_replay_lookup_uses_the_primary_key(connection: AsyncConnection) -> None:
    plan = await _plan(connection, select(ScoreRow).where(ScoreRow.transfer_id == uuid.uuid4()))
    assert "scores_pkey" in plan, plan
    plan = await _plan(connection, select(OutcomeRow).where(OutcomeRow.transfer_id == uuid.uuid4()))
    assert "outcomes_pkey" in plan, plan
