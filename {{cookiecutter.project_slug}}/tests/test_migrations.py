import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.core.db import create_engine
from app.models import Base
from tests.helpers import alembic_config, make_settings


def _schema_state(connection: Connection) -> tuple[set[str], list[object]]:
    tables = set(inspect(connection).get_table_names())
    drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return tables, drift


async def test_migrations_round_trip_without_drift(empty_database_url: str) -> None:
    settings = make_settings(database_url=empty_database_url)
    config = alembic_config(settings)
    engine = create_engine(settings)
    try:
        await asyncio.to_thread(command.upgrade, config, "head")
        await asyncio.to_thread(command.downgrade, config, "base")
        async with engine.connect() as connection:
            tables, _ = await connection.run_sync(_schema_state)
        assert tables == {"alembic_version"}

        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            tables, drift = await connection.run_sync(_schema_state)
        assert set(Base.metadata.tables) <= tables
        assert drift == []
        # The same check as `alembic check`, through the project's own Alembic environment.
        await asyncio.to_thread(command.check, config)
    finally:
        await engine.dispose()
