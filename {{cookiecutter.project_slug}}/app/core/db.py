"""The database engine and session factory: the only module that knows the driver."""

{% if cookiecutter.database == "postgresql" -%}
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from sqlalchemy import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    connect_args: dict[str, Any] = {
        # Bound the connect so readiness checks fail fast instead of hanging.
        "timeout": settings.db_pool_timeout,
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": "{{ cookiecutter.project_slug }}",
        },
    }
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection,
        # so neither asyncpg's nor SQLAlchemy's prepared-statement cache may be used.
        connect_args["statement_cache_size"] = 0
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    return create_async_engine(
        url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args=connect_args,
    )


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for lone reads: autocommit, one round trip with no BEGIN and COMMIT."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
{%- else -%}
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings

READ_ONLY_OPTION = "app_read_only"


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        connect_args={"timeout": settings.db_busy_timeout_ms / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={settings.db_busy_timeout_ms:d}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another writer committed meanwhile; taking the write lock up front makes
        # writers queue on busy_timeout instead. Read-only work takes no lock at all.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for lone reads: a deferred transaction, which takes no write lock."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})
{%- endif %}


class Database:
    """The engine, the session factory and the queue for lone reads: one per app, built in its
    lifespan from its settings.
    """

    def __init__(self, engine: AsyncEngine, *, read_slots: int, read_wait_seconds: float) -> None:
        self.engine = engine
        self.session_factory = async_sessionmaker(engine, expire_on_commit=False)
        self._read_engine = read_only(engine)
        self._read_slots = asyncio.Semaphore(read_slots)
        self._read_wait_seconds = read_wait_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        engine = create_engine(settings)
        {%- if cookiecutter.database == "postgresql" %}
        return cls(
            engine, read_slots=settings.db_pool_size, read_wait_seconds=settings.db_pool_timeout
        )
        {%- else %}
        pool_size: int = engine.pool.size()  # type: ignore[attr-defined]
        return cls(engine, read_slots=pool_size, read_wait_seconds=30.0)
        {%- endif %}

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads that need no transaction of their own.

        For the lookups every request makes (the current user): no session, no unit of work,
        and the pooled connection is held for the query alone. Callers queue for it in arrival
        order: the pool itself lets a newcomer take a freed connection ahead of requests that
        were already waiting, and under a burst some of those would wait until they time out.
        """
        if self._read_slots.locked():
            try:
                async with asyncio.timeout(self._read_wait_seconds):
                    await self._read_slots.acquire()
            except TimeoutError as exc:
                msg = "no database connection became free in time"
                raise PoolTimeoutError(msg) from exc
        else:
            await self._read_slots.acquire()  # a free slot: returns at once, no timer needed
        try:
            async with self._read_engine.connect() as connection:
                yield connection
        finally:
            self._read_slots.release()

    async def dispose(self) -> None:
        await self.engine.dispose()
