"""Alembic environment: async engine, every model's metadata, the app's settings."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.core.config import Settings
from app.core.db import create_engine
from app.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    # Tests pass their own database through the Alembic config; everything else uses settings.
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else _database_url(),
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite can alter a table only by copying it; batch mode does that for autogenerate.
        render_as_batch=_database_url().startswith("sqlite"),
        literal_binds=connection is None,
    )


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    settings = Settings().model_copy(update={"database_url": _database_url()})
    engine = create_engine(settings)
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


if context.is_offline_mode():
    _configure()
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
