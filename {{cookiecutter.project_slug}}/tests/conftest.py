"""Test fixtures: the app built from the test settings, a throwaway database migrated by
Alembic, and a rollback per test through a dependency override.
"""

import asyncio
{%- if cookiecutter.use_redis %}
import shutil
{%- endif %}
import socket
{%- if cookiecutter.use_redis %}
import uuid
{%- endif %}
from collections.abc import AsyncIterator, Callable, Iterator
{%- if cookiecutter.database == "sqlite" or cookiecutter.use_redis %}
from pathlib import Path
{%- endif %}
from typing import Any

{% if cookiecutter.database == "postgresql" -%}
import asyncpg
{% endif -%}
import pytest
from aiosmtpd.controller import Controller
from alembic import command
{%- if cookiecutter.use_b2_storage %}
from b2sdk.v2 import RawSimulator
{%- endif %}
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
{%- if cookiecutter.use_redis %}
from redis.asyncio import Redis
from redis.exceptions import RedisError
{%- endif %}
from sqlalchemy import delete
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy.engine import make_url
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.deps.db import get_database
{%- if cookiecutter.use_b2_storage %}
from app.api.v1.deps.storage import get_storage
{%- endif %}
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.models import Base, User
from app.schemas.user import UserCreate
from app.services.auth import AuthService
{%- if cookiecutter.use_b2_storage %}
from app.services.back_blaze_b2 import BackBlaze
{%- endif %}
from tests.helpers import (
    {%- if cookiecutter.database == "postgresql" %}
    ADMIN_URL,
    {%- endif %}
    DEFAULT_PASSWORD,
    {%- if cookiecutter.use_redis %}
    REQUIRE_REDIS,
    {%- endif %}
    {%- if cookiecutter.database == "postgresql" %}
    TEST_DATABASE_NAME,
    {%- else %}
    TEST_DATABASE_DIR,
    TEST_DATABASE_PATH,
    {%- endif %}
    TEST_DATABASE_URL,
    {%- if cookiecutter.use_redis %}
    TEST_REDIS_PREFIX,
    TEST_REDIS_URL,
    {%- endif %}
    TEST_SETTINGS,
    TOKENS,
    MailCatcher,
    {%- if cookiecutter.use_redis %}
    PrivateRedis,
    {%- endif %}
    RollbackDatabase,
    UserFactory,
    alembic_config,
    {%- if cookiecutter.database == "postgresql" %}
    create_database,
    drop_database,
    drop_stale_databases,
    {%- endif %}
    make_settings,
    {%- if cookiecutter.use_b2_storage %}
    make_storage,
    {%- endif %}
)
{%- if cookiecutter.database == "postgresql" %}


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    """A throwaway database for the session, migrated to head, dropped at the end."""
    try:
        await drop_stale_databases()
        await create_database(TEST_DATABASE_NAME)
    except (OSError, asyncpg.PostgresError) as exc:
        # The suite needs the server: stop at once with one line, not with every test skipped.
        pytest.exit(
            f"PostgreSQL is not reachable at TEST_DATABASE_URL={make_url(ADMIN_URL)} ({exc}); "
            "start one with `docker compose up -d postgres`, or point TEST_DATABASE_URL at a "
            "server (an admin connection: the tests create and drop their own database)",
            returncode=1,
        )
    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(TEST_SETTINGS), "head")
    yield TEST_DATABASE_URL
    await drop_database(TEST_DATABASE_NAME)
{%- else %}


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    """A throwaway database file for the session, migrated to head, removed at the end."""
    _remove_database_files()
    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(TEST_SETTINGS), "head")
    yield TEST_DATABASE_URL
    _remove_database_files()


def _remove_database_files() -> None:
    TEST_DATABASE_DIR.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{TEST_DATABASE_PATH}{suffix}").unlink(missing_ok=True)
{%- endif %}
{%- if cookiecutter.use_redis %}


@pytest.fixture(scope="session", autouse=True)
async def redis_server() -> AsyncIterator[bool]:
    """Whether the Redis at TEST_REDIS_URL answers; REQUIRE_REDIS=1 stops the run when not.

    The app works without Redis (its limits fall back to memory): only the tests of the
    shared state need the server, and they skip when it is missing.
    """
    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        reason = f"Redis is not reachable at {TEST_REDIS_URL!r}: {exc}"
        if REQUIRE_REDIS:
            pytest.exit(f"{reason} (REQUIRE_REDIS=1)", returncode=1)
        yield False
    else:
        yield True
        # The job streams and consumer groups of the run do not expire by themselves.
        keys = [key async for key in client.scan_iter(match=f"{TEST_REDIS_PREFIX}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_required(redis_server: bool) -> None:
    if not redis_server:
        pytest.skip(f"Redis is not reachable at {TEST_REDIS_URL!r}")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, started, for outages made for real; stopped at the
    end. Needs `redis-server` on PATH (REQUIRE_REDIS=1 fails without it).
    """
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not on PATH (Debian: apt-get install redis-server)"
        if REQUIRE_REDIS:
            pytest.fail(f"{reason} (REQUIRE_REDIS=1)")
        pytest.skip(reason)
    server = PrivateRedis(executable, tmp_path)
    server.start()
    yield server
    server.stop()
{%- endif %}


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[MailCatcher]:
    """A real SMTP server on loopback (aiosmtpd), keeping what it receives."""
    catcher = MailCatcher()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    catcher.port = port
    yield catcher
    controller.stop()


@pytest.fixture
def outbox(smtp_server: MailCatcher) -> MailCatcher:
    """The SMTP server, with no message yet in this test."""
    smtp_server.messages.clear()
    return smtp_server


@pytest.fixture
def mail_settings(smtp_server: MailCatcher) -> Callable[..., Settings]:
    """Test settings that send mail to the test SMTP server, and retry jobs quickly."""

    def settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
            "email_from": "My Tests <tests@example.com>",
            "frontend_url": "https://app.example.com",
            "job_retry_delay_seconds": 0.05,
            {%- if cookiecutter.use_redis %}
            # A queue of this test's own.
            "redis_key_prefix": f"{TEST_REDIS_PREFIX}-{uuid.uuid4().hex[:8]}",
            {%- endif %}
        }
        return make_settings(**{**values, **overrides})

    return settings


@pytest.fixture(scope="session")
async def app(database: str) -> AsyncIterator[FastAPI]:
    """The app built from the test settings, its lifespan running for the whole session."""
    application = create_app(TEST_SETTINGS)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
async def fresh_rate_limits(app: FastAPI) -> None:
    """Every test starts with unused rate limits."""
    await app.state.rate_limiter.reset()


@pytest.fixture
def use_database(app: FastAPI) -> Iterator[Callable[[Database], None]]:
    """Point the app at another database for one test (a dependency override)."""

    def use(database: Database) -> None:
        async def get_other_database() -> Database:
            return database

        app.dependency_overrides[get_database] = get_other_database

    yield use
    app.dependency_overrides.pop(get_database, None)


@pytest.fixture
async def session(
    app: FastAPI, use_database: Callable[[Database], None]
) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test; the app's requests
    run inside the same transaction.
    """
    database: Database = app.state.database
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        in_transaction = RollbackDatabase(connection)
        use_database(in_transaction)
        async with in_transaction.session_factory() as test_session:
            yield test_session
        await transaction.rollback()


@pytest.fixture
async def client(app: FastAPI, session: AsyncSession) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
async def clean_database(app: FastAPI) -> AsyncIterator[None]:
    """For tests whose data is committed for real: every table is emptied afterwards."""
    yield
    async with app.state.database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))


@pytest.fixture
async def committed_client(app: FastAPI, clean_database: None) -> AsyncIterator[AsyncClient]:
    """A client on the app's real database, for tests across connections."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def make_user(app: FastAPI, session: AsyncSession) -> UserFactory:
    counter = iter(range(1_000_000))
    auth = AuthService(session, app.state.passwords, TOKENS)

    async def _make_user(
        *, password: str = DEFAULT_PASSWORD, is_superuser: bool = False, **fields: Any
    ) -> User:
        number = next(counter)
        data = UserCreate(
            username=fields.pop("username", f"user{number}"),
            email=fields.pop("email", f"user{number}@example.com"),
            first_name=fields.pop("first_name", "Ada"),
            last_name=fields.pop("last_name", "Lovelace"),
            password=password,
        )
        user = await auth.signup(data)
        user.is_superuser = is_superuser
        for name, value in fields.items():
            setattr(user, name, value)
        await session.flush()
        return user

    return _make_user


@pytest.fixture
def unreachable_database_url() -> str:
    """A database that cannot be reached, for the failure paths."""
    {%- if cookiecutter.database == "postgresql" %}
    return "postgresql+asyncpg://postgres@127.0.0.1:1/unreachable"
    {%- else %}
    return "sqlite+aiosqlite:////nonexistent-directory/unreachable.db"
    {%- endif %}

{%- if cookiecutter.database == "postgresql" %}


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """A second throwaway database with nothing in it."""
    name = f"{TEST_DATABASE_NAME}_empty"
    await create_database(name)
    yield make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    await drop_database(name)
{%- else %}


@pytest.fixture
def empty_database_url(tmp_path: Path) -> str:
    """A second throwaway database with nothing in it."""
    return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
{%- endif %}
{%- if cookiecutter.use_b2_storage %}


@pytest.fixture
def b2_simulator() -> RawSimulator:
    return RawSimulator()


@pytest.fixture
def b2_account(b2_simulator: RawSimulator) -> tuple[str, str]:
    key_id, key = b2_simulator.create_account()
    return key_id, key


@pytest.fixture(autouse=True)
async def b2_storage(
    app: FastAPI, b2_simulator: RawSimulator, b2_account: tuple[str, str]
) -> AsyncIterator[BackBlaze]:
    """Every test's storage: the simulator with the configured bucket, never the real B2."""
    storage = make_storage(b2_simulator, *b2_account)
    await storage.create_bucket(TEST_SETTINGS.b2_bucket_name)
    storage.select_bucket(TEST_SETTINGS.b2_bucket_name)

    async def simulated_storage() -> BackBlaze:
        return storage

    app.dependency_overrides[get_storage] = simulated_storage
    yield storage
    app.dependency_overrides.pop(get_storage, None)
{%- endif %}
