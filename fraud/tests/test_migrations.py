from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from fraud.main import MIGRATIONS_PATH
from fraud.models import Base
from kit.settings import to_asyncpg_url


async def test_migrations_build_the_schema_the_models_describe(database_factory: object) -> None:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(to_asyncpg_url(url))
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
