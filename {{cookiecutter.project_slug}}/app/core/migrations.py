"""The database's migration revision against the code's: a database that was never migrated,
or is behind the code, is an operator's task (`alembic upgrade head`), not an outage to retry.

The code's revisions are read once, when the app starts; the database's at start, in every
readiness check, and when a query meets a missing table or column. Requests that succeed
never read it.
"""

import asyncio
import logging
{%- if cookiecutter.database == "sqlite" %}
import re
{%- endif %}
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Self

from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from loguru import logger
from sqlalchemy.engine import Connection
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy.exc import DBAPIError
{%- else %}
from sqlalchemy.exc import DBAPIError, OperationalError
{%- endif %}

from app.core.db import Database

# app/alembic, found from this file: the same place in the source tree, in the image (/app/app)
# and in an installed wheel (the package ships its migrations), whatever the working directory.
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent.parent / "alembic"
UPGRADE_COMMAND = "alembic upgrade head"
# Reading the revision at start-up or after a failed query must not hold anything up for long.
REVISION_READ_TIMEOUT_SECONDS = 2.0
{%- if cookiecutter.database == "postgresql" %}
# PostgreSQL's SQLSTATEs undefined_table and undefined_column.
MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})
{%- else %}
# sqlite3's words for a table or column that does not exist (in a query; in an INSERT).
MISSING_SCHEMA_MESSAGE = re.compile(r"^no such (table|column)\b|\bhas no column named\b")
{%- endif %}


class SchemaStatus(StrEnum):
    UNKNOWN = "unknown"  # not read yet: the database has not answered since the start
    CURRENT = "ok"
    # Revisions of the code are missing: `alembic upgrade head` applies them.
    BEHIND = "schema behind"
    # Migrated by newer code (this code was rolled back, or the migration of the next release
    # ran before its pods): this code keeps serving what the schema still has.
    AHEAD = "schema ahead"


@dataclass(frozen=True)
class SchemaState:
    status: SchemaStatus
    database_revision: str | None  # None: never migrated
    code_revision: str

    def revisions(self) -> dict[str, str | None]:
        return {"database": self.database_revision, "code": self.code_revision}


def is_missing_schema(error: DBAPIError) -> bool:
    """Whether a query failed because a table or column it names does not exist."""
    {%- if cookiecutter.database == "postgresql" %}
    return getattr(error.orig, "sqlstate", None) in MISSING_SCHEMA_SQLSTATES
    {%- else %}
    return isinstance(error, OperationalError) and bool(
        MISSING_SCHEMA_MESSAGE.search(str(error.orig))
    )
    {%- endif %}


def _described(script: Script) -> str:
    """`0004 (Password-reset tokens)`: the revision and the first line of its docstring."""
    doc = script.doc.rstrip(".")
    return f"{script.revision} ({doc})" if doc else script.revision


def _database_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


class SchemaCheck:
    """The code's migrations, and the last state of the database read against them: one per
    app, built in its lifespan.
    """

    def __init__(self, migrations: ScriptDirectory) -> None:
        head = migrations.get_current_head()
        if head is None:
            msg = f"no migration in {migrations.dir}"
            raise RuntimeError(msg)
        self._migrations = migrations
        self.code_revision = head
        # Alembic logs the dialect at INFO each time it reads the revision: in this process,
        # that would be two lines per readiness probe.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
        # Loads every revision now: comparing later touches no file.
        self._known = {script.revision for script in migrations.walk_revisions()}
        self.state = SchemaState(SchemaStatus.UNKNOWN, None, head)
        self._reading = asyncio.Lock()

    @classmethod
    def of_code(cls) -> Self:
        return cls(ScriptDirectory(MIGRATIONS_DIRECTORY))

    def compare(self, database_revision: str | None) -> SchemaState:
        if database_revision == self.code_revision:
            status = SchemaStatus.CURRENT
        elif database_revision is None or database_revision in self._known:
            status = SchemaStatus.BEHIND
        else:
            status = SchemaStatus.AHEAD
        return SchemaState(status, database_revision, self.code_revision)

    async def read(self, database: Database) -> SchemaState:
        """The database's state now (one lone read); logs when it differs from the last."""
        async with database.read_connection() as connection:
            revision = await connection.run_sync(_database_revision)
        state = self.compare(revision)
        if state != self.state:
            self._log(state)
        self.state = state
        return state

    async def read_at_start(self, database: Database) -> None:
        """Logs the database's state at start-up; a database that does not answer yet is left
        to readiness, and the app starts anyway.
        """
        try:
            async with asyncio.timeout(REVISION_READ_TIMEOUT_SECONDS):
                await self.read(database)
        except Exception as exc:  # noqa: BLE001 - any failure: the database is not there yet
            logger.warning(
                "Could not read the database's migration revision at start-up ({}: {}); "
                "readiness checks it again",
                type(exc).__name__,
                exc,
            )

    async def explains_missing_schema(self, database: Database) -> bool:
        """After a query met a missing table or column: whether the database is out of date
        for this code (if it is at the code's head, the query itself is wrong).

        Reads the revision only while the last state read was current or unknown: once the
        schema is known to be out of date, failing requests cost no more queries.
        """
        async with self._reading:
            if self.state.status in {SchemaStatus.CURRENT, SchemaStatus.UNKNOWN}:
                try:
                    async with asyncio.timeout(REVISION_READ_TIMEOUT_SECONDS):
                        await self.read(database)
                except Exception:  # noqa: BLE001 - cannot tell: trust the failed query
                    logger.opt(exception=True).warning("Could not read the migration revision")
                    return True
            return self.state.status is not SchemaStatus.CURRENT

    def _log(self, state: SchemaState) -> None:
        if state.status is SchemaStatus.BEHIND:
            missing = self._migrations.iterate_revisions(
                state.code_revision, state.database_revision or "base"
            )
            logger.error(
                "The database schema is behind the code: at revision {}, missing {}. Requests "
                "that need them answer 503 SCHEMA_OUT_OF_DATE until `{}` applies them",
                state.database_revision or "none (never migrated)",
                ", ".join(_described(script) for script in reversed(list(missing))),
                UPGRADE_COMMAND,
            )
        elif state.status is SchemaStatus.AHEAD:
            logger.warning(
                "The database schema is ahead of the code: at revision {}, which this code does "
                "not know (its newest is {}); it was migrated by a newer release. Requests that "
                "meet a table or column it no longer has answer 503 SCHEMA_OUT_OF_DATE",
                state.database_revision,
                state.code_revision,
            )
        else:
            logger.info("The database schema is at the code's revision {}", state.code_revision)
