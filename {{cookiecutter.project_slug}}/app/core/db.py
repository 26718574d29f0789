"""The database engine and session factory: the only module that knows the driver."""

{% if cookiecutter.database == "postgresql" -%}
import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Self

from sqlalchemy import Executable, RowMapping, event, make_url
from sqlalchemy.engine import Connection, Dialect
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
    # Start-up parameters: PgBouncer passes application_name on, and refuses the others.
    server_settings = {"application_name": "{{ cookiecutter.project_slug }}"}
    if not settings.db_pgbouncer:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    connect_args: dict[str, Any] = {
        # Bound the connect so readiness checks fail fast instead of hanging.
        "timeout": settings.db_connect_timeout,
        "server_settings": server_settings,
    }
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection, so
        # neither asyncpg's nor SQLAlchemy's prepared-statement cache may be used. Without a
        # cache asyncpg uses the unnamed statement and parses it again with each execution, so
        # no statement outlives its message. (Unique names from `prepared_statement_name_func`
        # fail here: a statement prepared outside a transaction is run on another server
        # connection, and the names left behind pile up on the server connections.)
        connect_args["statement_cache_size"] = 0
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    engine = create_async_engine(
        url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args=connect_args,
    )
    _treat_connect_timeouts_as_unreachable(engine)
    if settings.db_pgbouncer:
        _time_out_each_transaction(engine, settings.db_statement_timeout_ms)
    return engine


def _treat_connect_timeouts_as_unreachable(engine: AsyncEngine) -> None:
    """A server that accepts the connection but never answers (asyncpg's bare TimeoutError)
    is unreachable, like one that refuses it: a 503, not a 500.
    """

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except TimeoutError as exc:
            msg = "the database did not answer within DB_CONNECT_TIMEOUT"
            raise ConnectionError(msg) from exc


def _time_out_each_transaction(engine: AsyncEngine, timeout_ms: int) -> None:
    """The statement timeout as the first statement of every transaction (behind PgBouncer).

    `SET LOCAL` ends with its transaction, so it never reaches another client of the same
    server connection. It costs one statement per transaction; lone reads in autocommit have no
    transaction to set it in and keep the server's default (see docs/operations.md).
    """
    statement = f"SET LOCAL statement_timeout = {timeout_ms:d}"

    @event.listens_for(engine.sync_engine, "begin")
    def _set_statement_timeout(connection: Connection) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql(statement)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The engine for lone reads: autocommit, one round trip with no BEGIN and COMMIT."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
{%- else -%}
import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Self

from sqlalchemy import Executable, RowMapping, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Connection, Engine
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
    """The engine for reads outside a session: a deferred transaction, which takes no write
    lock.
    """
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def lookup_engine(engine: AsyncEngine, connections: int) -> Engine:
    """The engine for lookups: sqlite3 itself, called from the lookup threads.

    aiosqlite hands every statement to its connection's thread and wakes the event loop for
    the answer: a lookup in a transaction of its own takes four such hops (BEGIN, SELECT,
    fetch, ROLLBACK). Through this engine a whole lookup is one hop. Its connections are
    read-only (`query_only`) and in autocommit, so each SELECT reads one consistent snapshot
    and takes no lock: in WAL mode readers neither wait for the writer nor hold it up, and the
    writes keep their rules (BEGIN IMMEDIATE, busy timeout) on the main engine. Waits are
    bounded by sqlite3's default busy timeout (5 s).
    """
    lookups = create_sync_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        echo=engine.echo,
        pool_size=connections,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
    )

    @event.listens_for(lookups, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        # WAL is a property of the file, set by the main engine's first connection.
        dbapi_connection.execute("PRAGMA query_only=ON")

    return lookups
{%- endif %}


NO_CONNECTION_IN_TIME = "no database connection became free in time"


class Database:
    """The engine, the session factory and the queue for lone reads: one per app, built in its
    lifespan from its settings.
    """

    def __init__(self, engine: AsyncEngine, *, read_slots: int, read_wait_seconds: float) -> None:
        self.engine = engine
        self.session_factory = async_sessionmaker(engine, expire_on_commit=False)
        self._read_engine = read_only(engine)
        # For requests that only read: sessions on read_only()'s engine, which never wait for
        # writers.
        self.read_session_factory = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._read_slots = asyncio.Semaphore(read_slots)
        self._read_wait_seconds = read_wait_seconds
        {%- if cookiecutter.database == "sqlite" %}
        self._lookup_engine = lookup_engine(engine, read_slots)
        self._lookup_threads = ThreadPoolExecutor(read_slots, thread_name_prefix="db-lookup")
        {%- endif %}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        engine = create_engine(settings)
        {%- if cookiecutter.database == "postgresql" %}
        # A turn for every connection the pool can open, its overflow included: a read then
        # waits for a turn only while other lone reads hold all of them, and the connection a
        # finished read hands back is there when its turn comes. Fewer turns would make reads
        # queue for a turn while overflow connections sit unused.
        read_slots = settings.db_pool_size + settings.db_max_overflow
        return cls(engine, read_slots=read_slots, read_wait_seconds=settings.db_pool_timeout)
        {%- else %}
        pool_size: int = engine.pool.size()  # type: ignore[attr-defined]
        return cls(engine, read_slots=pool_size, read_wait_seconds=30.0)
        {%- endif %}

    @asynccontextmanager
    async def _read_slot(self) -> AsyncIterator[float | None]:
        """A turn for a read outside a session, in arrival order: the pool itself lets a
        newcomer take a freed connection ahead of requests that were already waiting, and under
        a burst some of those would wait until they time out.

        Yields the deadline (event loop time) of a read that had to wait for its turn, by which
        it must have its connection too; None when the turn was free at once.
        """
        deadline = None
        if self._read_slots.locked():
            deadline = asyncio.get_running_loop().time() + self._read_wait_seconds
            try:
                async with asyncio.timeout_at(deadline):
                    await self._read_slots.acquire()
            except TimeoutError as exc:
                raise PoolTimeoutError(NO_CONNECTION_IN_TIME) from exc
        else:
            await self._read_slots.acquire()  # a free slot: returns at once, no timer needed
        try:
            yield deadline
        finally:
            self._read_slots.release()

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads that need no transaction of their own (readiness checks):
        no session, no unit of work, and the pooled connection is held for the reads alone.
        """
        async with self._read_slot() as deadline:
            if deadline is None:  # no wait for the turn: the pool's own timeout bounds it all
                async with self._read_engine.connect() as connection:
                    yield connection
                return
            # After a wait for its turn, the read waits at the pool only for what is left of
            # it: one wait in all, not a turn's and then the pool's whole timeout again.
            async with AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout_at(deadline):
                        connection = await stack.enter_async_context(self._read_engine.connect())
                except TimeoutError as exc:
                    raise PoolTimeoutError(NO_CONNECTION_IN_TIME) from exc
                yield connection

    async def lookup(self, statement: Executable, parameters: dict[str, Any]) -> RowMapping | None:
        """The first row of a lone read, such as the current user that every authenticated
        request reads: no session, no transaction of its own, queued like `read_connection`.
        """
        {%- if cookiecutter.database == "postgresql" %}
        async with self.read_connection() as connection:
            result = await connection.execute(statement, parameters)
            return result.mappings().first()
        {%- else %}
        async with self._read_slot():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._lookup_threads, self._lookup_in_thread, statement, parameters
            )
        {%- endif %}
    {%- if cookiecutter.database == "sqlite" %}

    def _lookup_in_thread(
        self, statement: Executable, parameters: dict[str, Any]
    ) -> RowMapping | None:
        with self._lookup_engine.connect() as connection:
            return connection.execute(statement, parameters).mappings().first()
    {%- endif %}

    async def dispose(self) -> None:
        {%- if cookiecutter.database == "sqlite" %}
        self._lookup_threads.shutdown(wait=False, cancel_futures=True)
        self._lookup_engine.dispose()
        {%- endif %}
        await self.engine.dispose()
