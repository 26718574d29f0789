"""Alembic environment: async engine, every model's metadata, the app's settings."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.core.config import Settings, load_settings
from app.core.db import create_engine
from app.models import Base

config = context.config
target_metadata = Base.metadata
# Tests hand their own settings in (Alembic's `config.attributes`); the command line reads the
# environment and `.env`, like the app.
settings: Settings = config.attributes.get("settings") or load_settings()


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else settings.database_url,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite can alter a table only by copying it; batch mode does that for autogenerate.
        render_as_batch=settings.database_url.startswith("sqlite"),
        literal_binds=connection is None,
    )


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
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
