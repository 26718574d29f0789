import asyncio
{%- if cookiecutter.database == "postgresql" %}
import time
{%- endif %}

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.core.db import create_engine
from app.models import Base
{%- if cookiecutter.database == "postgresql" %}
from tests.helpers import (
    STALE_DATABASE_SECONDS,
    TEST_DATABASE_NAME,
    TEST_DATABASE_PREFIX,
    alembic_config,
    create_database,
    drop_database,
    drop_stale_databases,
    make_settings,
)
{%- else %}
from tests.helpers import alembic_config, make_settings
{%- endif %}


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

{%- if cookiecutter.database == "postgresql" %}


async def test_databases_left_by_killed_runs_are_dropped() -> None:
    """A killed run cannot drop its database; the next one drops it by prefix and age."""
    now = int(time.time())
    dead = f"{TEST_DATABASE_PREFIX}{now - STALE_DATABASE_SECONDS - 60}_killed"
    alive = f"{TEST_DATABASE_PREFIX}{now - 60}_running"
    for name in (dead, alive):
        await create_database(name)
    try:
        dropped = await drop_stale_databases()
        assert dead in dropped
        assert alive not in dropped
        assert TEST_DATABASE_NAME not in dropped
    finally:
        for name in (dead, alive):
            await drop_database(name)
{%- endif %}
