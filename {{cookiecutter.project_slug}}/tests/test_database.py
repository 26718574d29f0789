import asyncio
{%- if cookiecutter.database == "sqlite" %}
import sqlite3
{%- endif %}
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, text
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy.event import listen
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
{%- else %}
from sqlalchemy.exc import OperationalError
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import Database, create_engine
from app.models import RefreshToken, User
from tests.helpers import (
    DEFAULT_PASSWORD,
    {%- if cookiecutter.database == "sqlite" %}
    TEST_DATABASE_PATH,
    {%- endif %}
    TEST_SETTINGS,
    UserFactory,
    auth_headers,
    impatient_database,
    make_settings,
    uncommitted_write,
)


async def test_timestamps_come_back_aware_and_in_utc(
    make_user: UserFactory, session: AsyncSession
) -> None:
    user = await make_user()
    session.expunge_all()
    stored = await session.scalar(select(User).where(User.id == user.id))
    assert stored is not None
    for value in (stored.created_at, stored.updated_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == UTC.utcoffset(None)
        assert abs((datetime.now(UTC) - value).total_seconds()) < 60


async def test_naive_datetimes_are_refused(make_user: UserFactory, session: AsyncSession) -> None:
    user = await make_user()
    user.updated_at = datetime(2020, 1, 1)  # noqa: DTZ001 - naive on purpose
    with pytest.raises(Exception, match="naive datetimes"):
        await session.flush()
    await session.rollback()


async def signed_up(client: AsyncClient, username: str) -> dict[str, str]:
    """Sign a user up through the API (committed for real); return its auth headers."""
    created = await client.post(
        "/api/v1/auth/signup",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "first_name": "Test",
            "last_name": "User",
            "password": "a sound password",
        },
    )
    assert created.status_code == 201, created.text
    return auth_headers(User(id=uuid.UUID(created.json()["id"])))


@pytest.fixture
async def small_engine(use_database: Callable[[Database], None]) -> AsyncIterator[AsyncEngine]:
    """The app on its own small database, so a test can exhaust it."""
    {%- if cookiecutter.database == "postgresql" %}
    settings = make_settings(db_pool_size=2, db_max_overflow=0, db_pool_timeout=0.5)
    {%- else %}
    settings = make_settings(db_busy_timeout_ms=200)
    {%- endif %}
    database = Database.from_settings(settings)
    use_database(database)
    yield database.engine
    await database.dispose()


async def test_saturated_database_answers_503(
    small_engine: AsyncEngine, committed_client: AsyncClient
) -> None:
    signup = {
        "username": "patient",
        "email": "patient@example.com",
        "first_name": "Pat",
        "last_name": "Ient",
        "password": "a sound password",
    }
    {%- if cookiecutter.database == "postgresql" %}
    # Every pooled connection is checked out by someone else.
    async with small_engine.connect() as first, small_engine.connect() as second:
        await first.execute(text("SELECT 1"))
        await second.execute(text("SELECT 1"))
        response = await committed_client.post("/api/v1/auth/signup", json=signup)
    {%- else %}
    # Another connection holds SQLite's write lock for longer than the busy timeout.
    async with small_engine.connect() as holder:
        await holder.begin()
        response = await committed_client.post("/api/v1/auth/signup", json=signup)
        await holder.rollback()
    {%- endif %}
    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "1"
    # Once the database is free again, the same request goes through.
    retry = await committed_client.post("/api/v1/auth/signup", json=signup)
    assert retry.status_code == 201


async def test_many_more_clients_than_connections_do_not_wedge(
    committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    headers = await signed_up(committed_client, "crowd")
    {%- if cookiecutter.database == "postgresql" %}
    # Two connections for sixty clients; the waits are long enough for a loaded machine to
    # open a connection at all, so only the queue decides who waits.
    settings = make_settings(db_pool_size=2, db_max_overflow=0, db_pool_timeout=3)
    {%- else %}
    settings = make_settings(db_busy_timeout_ms=3000)
    {%- endif %}
    database = Database.from_settings(settings)
    use_database(database)
    try:
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(committed_client.get("/api/v1/users/me", headers=headers) for _ in range(60))
            ),
            timeout=60,
        )
    finally:
        await database.dispose()
    statuses = {response.status_code for response in responses}
    assert statuses <= {200, 503}
    assert 200 in statuses


async def test_unreachable_database_answers_503(
    committed_client: AsyncClient,
    use_database: Callable[[Database], None],
    unreachable_database_url: str,
) -> None:
    database = Database.from_settings(make_settings(database_url=unreachable_database_url))
    use_database(database)
    try:
        response = await committed_client.post(
            "/api/v1/auth/login", data={"username": "anyone", "password": "whatever-it-is"}
        )
    finally:
        await database.dispose()
    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"
{%- if cookiecutter.database == "postgresql" %}


async def test_connection_killed_by_the_server_answers_503_then_recovers(
    small_engine: AsyncEngine, committed_client: AsyncClient
) -> None:
    """A database restart kills pooled connections; one request fails cleanly, then it heals."""
    headers = await signed_up(committed_client, "survivor")
    async with small_engine.connect() as connection:
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
    admin_engine = create_engine(TEST_SETTINGS)
    async with admin_engine.connect() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await admin_engine.dispose()
    statuses = [
        (await committed_client.get("/api/v1/users/me", headers=headers)).status_code
        for _ in range(3)
    ]
    assert statuses[0] in {200, 503}
    assert statuses[1:] == [200, 200]


@pytest.mark.parametrize(
    ("pgbouncer", "leaves_prepared_statements"), [(False, True), (True, False)]
)
async def test_pgbouncer_mode_leaves_no_prepared_statements(
    pgbouncer: bool, leaves_prepared_statements: bool
) -> None:
    """Behind PgBouncer in transaction mode, a named statement would outlive its connection."""
    engine = create_engine(make_settings(db_pgbouncer=pgbouncer))
    try:
        async with engine.connect() as connection:
            for value in range(3):
                query = text("SELECT CAST(:value AS integer) + 1")
                assert await connection.scalar(query, {"value": value}) == value + 1
            prepared = await connection.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
    finally:
        await engine.dispose()
    assert bool(prepared) is leaves_prepared_statements


async def test_a_statement_over_the_timeout_is_cancelled() -> None:
    """DB_STATEMENT_TIMEOUT_MS reaches the server: as a start-up parameter, or behind PgBouncer
    (TEST_DB_PGBOUNCER=1) with SET LOCAL in each transaction, which ends with it.
    """
    impatient = create_engine(make_settings(db_statement_timeout_ms=100))
    patient = create_engine(TEST_SETTINGS)
    try:
        for _ in range(2):  # the next transaction too, on whichever server connection
            with pytest.raises(DBAPIError, match="statement timeout"):
                async with impatient.begin() as connection:
                    await connection.execute(text("SELECT pg_sleep(5)"))
        async with patient.begin() as connection:
            others = await connection.scalar(text("SELECT current_setting('statement_timeout')"))
    finally:
        await impatient.dispose()
        await patient.dispose()
    assert others == f"{TEST_SETTINGS.db_statement_timeout_ms // 1000}s"


async def test_behind_pgbouncer_only_transactions_pay_for_the_timeout() -> None:
    """DB_PGBOUNCER=true: a transaction starts with SET LOCAL statement_timeout; a lone read in
    autocommit, where it would do nothing, stays one statement.
    """
    database = Database.from_settings(make_settings(db_pgbouncer=True))
    sent: list[str] = []
    listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda _connection, _cursor, statement, *_: sent.append(statement),
    )
    query = text("SELECT 1 AS one")
    try:
        assert await database.lookup(query, {}) == {"one": 1}
        lone_read, sent[:] = list(sent), []
        async with database.engine.begin() as connection:
            await connection.execute(query)
    finally:
        await database.dispose()
    assert lone_read == ["SELECT 1 AS one"]
    timeout = TEST_SETTINGS.db_statement_timeout_ms
    assert sent == [f"SET LOCAL statement_timeout = {timeout}", "SELECT 1 AS one"]


async def test_the_server_knows_the_service_by_name() -> None:
    database = Database.from_settings(TEST_SETTINGS)
    query = text("SELECT current_setting('application_name') AS name")
    try:
        async with database.engine.begin() as connection:
            in_a_transaction = await connection.scalar(query)
        alone = await database.lookup(query, {})
    finally:
        await database.dispose()
    assert in_a_transaction == "{{ cookiecutter.project_slug }}"
    assert alone == {"name": "{{ cookiecutter.project_slug }}"}


async def test_a_server_that_never_answers_is_503_within_the_connect_timeout(
    committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    """It accepts the connection and says nothing: DB_CONNECT_TIMEOUT ends the wait, not
    DB_POOL_TIMEOUT nor asyncpg's own minute.
    """
    writers: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(
        lambda _reader, writer: writers.append(writer), "127.0.0.1", 0
    )
    port = silent.sockets[0].getsockname()[1]
    settings = make_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/silent",
        db_connect_timeout=0.2,
        db_pool_timeout=30,
    )
    database = Database.from_settings(settings)
    use_database(database)
    try:
        async with asyncio.timeout(10):
            response = await committed_client.post(
                "/api/v1/auth/login", data={"username": "anyone", "password": "whatever-it-is"}
            )
    finally:
        await database.dispose()
        for writer in writers:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"


async def test_reads_take_turns_for_the_overflow_connections_too(
    committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    """One pooled connection and one overflow: with a read holding the first, the next read
    takes the overflow at once. Only with both held does a read wait for its turn (once),
    then answer 503.
    """
    headers = await signed_up(committed_client, "overflowing")
    database = Database.from_settings(
        make_settings(db_pool_size=1, db_max_overflow=1, db_pool_timeout=0.5)
    )
    use_database(database)
    try:
        async with database.read_connection() as first:
            await first.execute(text("SELECT 1"))
            beside_one = await committed_client.get("/api/v1/users/me", headers=headers)
            async with database.read_connection() as second:
                await second.execute(text("SELECT 1"))
                beside_two = await committed_client.get("/api/v1/users/me", headers=headers)
    finally:
        await database.dispose()
    assert beside_one.status_code == 200, beside_one.text
    assert beside_two.status_code == 503
    assert beside_two.json()["error_code"] == "DATABASE_UNAVAILABLE"


async def test_a_read_waits_for_its_turn_and_its_connection_one_pool_timeout_in_all() -> None:
    """The pool (one connection) and its overflow (one) are busy: a session holds one, a lone
    read the other; another session, then two more reads, queue. One read takes the last turn
    and waits at the pool, the other waits for a turn. When the first read ends, its connection
    goes to the waiting session and its turn to the late read, which has only the rest of
    DB_POOL_TIMEOUT left to wait at the pool. It must give up then, not be served by the first
    session when that ends, after more than DB_POOL_TIMEOUT.
    """
    pool_timeout = 2.5
    database = Database.from_settings(
        make_settings(db_pool_size=1, db_max_overflow=1, db_pool_timeout=pool_timeout)
    )
    query = text("SELECT 1 AS one")
    loop = asyncio.get_running_loop()
    finish_the_second_session = asyncio.Event()

    async def second_session() -> None:
        async with database.engine.connect():
            await finish_the_second_session.wait()

    try:
        async with database.engine.connect() as first_session:
            await first_session.execute(query)
            async with database.read_connection() as first_read:
                await first_read.execute(query)
                started = loop.time()
                # In this order: the session queues at the pool first, then the reads.
                session = asyncio.create_task(second_session())
                reads = [asyncio.create_task(database.lookup(query, {})) for _ in range(2)]
                await asyncio.sleep(0.6 * pool_timeout)
            # The late read gives up at 1.0 x the timeout; waiting anew, it would at 1.6 x.
            await asyncio.sleep(started + 1.3 * pool_timeout - loop.time())
        outcomes = await asyncio.gather(*reads, return_exceptions=True)
    finally:
        finish_the_second_session.set()
        await database.dispose()
    await session
    assert [type(outcome) for outcome in outcomes] == [PoolTimeoutError] * 2, outcomes
{%- endif %}


async def test_reads_waiting_too_long_for_a_connection_answer_503(
    committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    headers = await signed_up(committed_client, "waiter")
    database = Database(create_engine(TEST_SETTINGS), read_slots=1, read_wait_seconds=0.2)
    use_database(database)
    try:
        async with database.read_connection():  # another request holds the only read slot
            response = await committed_client.get("/api/v1/users/me", headers=headers)
        recovered = await committed_client.get("/api/v1/users/me", headers=headers)
    finally:
        await database.dispose()
    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"
    assert recovered.status_code == 200


async def test_deleting_a_user_deletes_their_refresh_tokens(
    client: AsyncClient, make_user: UserFactory, session: AsyncSession
) -> None:
    """The foreign key's ON DELETE CASCADE (on SQLite only with `PRAGMA foreign_keys=ON`)."""
    admin, leaver = await make_user(is_superuser=True), await make_user()
    form = {"username": leaver.username, "password": DEFAULT_PASSWORD}
    assert (await client.post("/api/v1/auth/login", data=form)).status_code == 200
    tokens = select(func.count()).select_from(RefreshToken).where(RefreshToken.user_id == leaver.id)
    assert await session.scalar(tokens) == 1
    deleted = await client.delete(f"/api/v1/users/{leaver.id}", headers=auth_headers(admin))
    assert deleted.status_code == 204
    assert await session.scalar(tokens) == 0


async def test_admin_reads_do_not_queue_behind_a_writer(
    app: FastAPI, committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    """The admin's list and lookup only read: while another transaction holds uncommitted
    writes and their locks, they answer at once from what is committed.
    """
    async with app.state.database.session_factory() as session:
        admin = User(
            username="reader",
            email="reader@example.com",
            first_name="Rea",
            last_name="Der",
            hashed_password=await app.state.passwords.hash(DEFAULT_PASSWORD),
            is_superuser=True,
        )
        session.add(admin)
        await session.commit()
    database = impatient_database()
    use_database(database)
    headers = auth_headers(admin)
    try:
        async with uncommitted_write(app.state.database, "UPDATE users SET first_name = 'New'"):
            listed = await committed_client.get("/api/v1/users", headers=headers)
            one = await committed_client.get(f"/api/v1/users/{admin.id}", headers=headers)
    finally:
        await database.dispose()
    assert listed.status_code == 200, listed.text
    assert [user["first_name"] for user in listed.json()["items"]] == ["Rea"]
    assert one.status_code == 200, one.text
    assert one.json()["first_name"] == "Rea"


async def test_concurrent_read_then_write_requests_all_succeed(
    app: FastAPI, committed_client: AsyncClient
) -> None:
    """Thirty admin PATCHes at once, each reading its user and then writing it: on SQLite a
    transaction that reads first and writes later fails at once when another writer got in
    between, unless every write transaction takes the write lock when it begins.
    """
    async with app.state.database.session_factory() as session:
        hashed = await app.state.passwords.hash(DEFAULT_PASSWORD)
        users = [
            User(
                username=f"patched{n}",
                email=f"patched{n}@example.com",
                first_name="Pat",
                last_name="Ched",
                hashed_password=hashed,
                is_superuser=n == 0,
            )
            for n in range(31)
        ]
        session.add_all(users)
        await session.commit()
    admin, others = users[0], users[1:]
    responses = await asyncio.gather(
        *(
            committed_client.patch(
                f"/api/v1/users/{user.id}",
                json={"first_name": f"Patched {n}"},
                headers=auth_headers(admin),
            )
            for n, user in enumerate(others)
        )
    )
    assert [response.status_code for response in responses] == [200] * len(others)
{%- if cookiecutter.database == "sqlite" %}


async def test_a_long_read_does_not_block_a_write(
    committed_client: AsyncClient, use_database: Callable[[Database], None]
) -> None:
    """WAL mode: a reader in the middle of a transaction must not hold up a writer's commit
    (in SQLite's default journal mode the commit waits for the reader, then fails).
    """
    database = Database.from_settings(make_settings(db_busy_timeout_ms=300))
    use_database(database)
    reader = sqlite3.connect(TEST_DATABASE_PATH, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM users").fetchone()  # a read in progress
        signup = {
            "username": "writer",
            "email": "writer@example.com",
            "first_name": "Wri",
            "last_name": "Ter",
            "password": "a sound password",
        }
        response = await committed_client.post("/api/v1/auth/signup", json=signup)
        reader.execute("COMMIT")
    finally:
        reader.close()
        await database.dispose()
    assert response.status_code == 201, response.text


async def test_lookups_read_a_snapshot_while_a_writer_holds_the_lock(
    app: FastAPI, committed_client: AsyncClient
) -> None:
    """The current user is read on the lookup connections: they take no lock, so a request
    does not queue behind a write transaction, and they see only what is committed.
    """
    headers = await signed_up(committed_client, "snapshot")
    async with uncommitted_write(app.state.database, "UPDATE users SET first_name = 'New'"):
        response = await committed_client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["first_name"] == "Test"


async def test_lookup_connections_cannot_write(app: FastAPI, committed_client: AsyncClient) -> None:
    await signed_up(committed_client, "untouchable")
    database: Database = app.state.database
    with pytest.raises(OperationalError, match="readonly database"):
        await database.lookup(text("DELETE FROM users RETURNING id"), {})
    assert await database.lookup(text("SELECT count(*) AS users FROM users"), {}) == {"users": 1}
{%- endif %}
