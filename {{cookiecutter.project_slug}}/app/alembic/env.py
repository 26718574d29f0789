"""Alembic environment: async engine, every model's metadata, the app's settings."""

import asyncio
from logging.config import fileConfig

from alembic import context
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.core.config import Settings, load_settings
from app.core.db import create_engine
from app.models import Base

config = context.config
target_metadata = Base.metadata
# Tests hand their own settings in (Alembic's `config.attributes`); the command line reads the
# environment and `.env`, like the app, and needs only the database settings (no Need): a
# migration Job gets no secret but the database's.
settings: Settings = config.attributes.get("settings") or load_settings()
if "settings" not in config.attributes and config.config_file_name is not None:
    # The command line: show what runs ("Running upgrade 0001 -> 0002"), as alembic.ini says.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _skip_empty_autogenerate(
    context_: MigrationContext, revision: object, directives: list[MigrationScript]
) -> None:
    """`alembic revision --autogenerate` with no model change writes no empty migration."""
    if config.cmd_opts is not None and getattr(config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
            directives.clear()
            print("No change in the models: no migration written.")  # noqa: T201


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else settings.database_url,
        target_metadata=target_metadata,
        compare_type=True,
        {%- if cookiecutter.database == "sqlite" %}
        # SQLite can alter a table only by copying it; batch mode does that for autogenerate.
        render_as_batch=True,
        {%- endif %}
        literal_binds=connection is None,
        process_revision_directives=_skip_empty_autogenerate,
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
