"""Test fixtures: a throwaway database migrated by Alembic, and a rollback per test.

Settings are fixed through the environment before `app` is imported, because the engine is
built from them at import time.
"""

import asyncio
import os
{%- if cookiecutter.database == "postgresql" %}
import uuid
{%- endif %}
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

{% if cookiecutter.database == "postgresql" -%}
import asyncpg
{% endif -%}
import pytest
from alembic import command
from alembic.config import Config
{%- if cookiecutter.use_b2_storage %}
from b2sdk.v2 import B2HttpApiConfig, RawSimulator
{%- endif %}
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy.engine import make_url
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

PROJECT_ROOT = Path(__file__).resolve().parent.parent
{%- if cookiecutter.database == "postgresql" %}
ADMIN_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
TEST_DATABASE_NAME = f"test_{{ cookiecutter.project_slug.replace('-', '_') }}_{uuid.uuid4().hex[:8]}"
TEST_DATABASE_URL = make_url(ADMIN_URL).set(database=TEST_DATABASE_NAME)
os.environ["DATABASE_URL"] = TEST_DATABASE_URL.render_as_string(hide_password=False)
{%- else %}
TEST_DATABASE_DIR = Path(os.environ.get("TEST_DATABASE_DIR", PROJECT_ROOT / ".pytest_cache"))
TEST_DATABASE_PATH = TEST_DATABASE_DIR / f"test-{os.getpid()}.db"
os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{TEST_DATABASE_PATH}"
{%- endif %}
os.environ["CURRENT_ENVIRONMENT"] = "local"
os.environ["SECRET_KEY"] = "test-secret-key-" + "0123456789abcdef" * 4
os.environ["BCRYPT_ROUNDS"] = "4"  # the minimum: tests check behaviour, not hashing cost
os.environ["LOG_LEVEL"] = "WARNING"
{%- if cookiecutter.use_b2_storage %}
# Tests never reach the real B2: `b2_storage` below replaces the storage dependency.
os.environ["B2_APPLICATION_KEY_ID"] = "test-key-id"
os.environ["B2_APPLICATION_KEY"] = "test-key"
os.environ["B2_BUCKET_NAME"] = "test-bucket"
{%- endif %}

from app.api.v1.deps import db as db_deps  # noqa: E402 - needs the environment above
{%- if cookiecutter.use_b2_storage %}
from app.api.v1.deps.storage import get_storage  # noqa: E402
{%- endif %}
from app.core import db as core_db  # noqa: E402
from app.core.auth import TokenType, create_token  # noqa: E402
from app.core.db import engine  # noqa: E402
from app.main import app  # noqa: E402
from app.models import Base, User  # noqa: E402
from app.schemas.user import UserCreate  # noqa: E402
from app.services.auth import AuthService  # noqa: E402
{%- if cookiecutter.use_b2_storage %}
from app.services.back_blaze_b2 import BackBlaze  # noqa: E402
{%- endif %}

DEFAULT_PASSWORD = "correct horse battery"


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "app" / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config
{%- if cookiecutter.database == "postgresql" %}


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(ADMIN_URL))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(ADMIN_URL))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session", autouse=True)
async def database() -> AsyncIterator[str]:
    """A throwaway database for the session, migrated to head, dropped at the end."""
    try:
        await create_database(TEST_DATABASE_NAME)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL is not reachable at {make_url(ADMIN_URL)!r}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.exit(f"{reason} (REQUIRE_POSTGRES=1)", returncode=1)
        pytest.skip(reason)
    url = os.environ["DATABASE_URL"]
    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    yield url
    await engine.dispose()
    await drop_database(TEST_DATABASE_NAME)
{%- else %}


@pytest.fixture(scope="session", autouse=True)
async def database() -> AsyncIterator[str]:
    """A throwaway database file for the session, migrated to head, removed at the end."""
    _remove_database_files()
    url = os.environ["DATABASE_URL"]
    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    yield url
    await engine.dispose()
    _remove_database_files()


def _remove_database_files() -> None:
    TEST_DATABASE_DIR.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{TEST_DATABASE_PATH}{suffix}").unlink(missing_ok=True)
{%- endif %}


@pytest.fixture
async def session(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test.

    The app's own session dependency runs unchanged on sessions bound to the same connection:
    its commits only release a savepoint, so nothing outlives the test. Reads outside the
    session (the current user) use that connection too, so they see the test's data.
    """
    async with engine.connect() as connection:
        transaction = await connection.begin()
        factory = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

        @asynccontextmanager
        async def read_connection() -> AsyncIterator[AsyncConnection]:
            yield connection

        monkeypatch.setattr(db_deps, "session_factory", factory)
        monkeypatch.setattr(core_db, "read_connection", read_connection)
        async with factory() as test_session:
            yield test_session
        await transaction.rollback()


@pytest.fixture
async def client(session: AsyncSession) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
async def clean_database() -> AsyncIterator[None]:
    """For tests whose data is committed for real: every table is emptied afterwards."""
    yield
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))


@pytest.fixture
async def committed_client(clean_database: None) -> AsyncIterator[AsyncClient]:
    """A client on the app's real session factory, for tests across connections."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


UserFactory = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(session: AsyncSession) -> UserFactory:
    counter = iter(range(1_000_000))

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
        user = await AuthService(session).signup(data)
        user.is_superuser = is_superuser
        for name, value in fields.items():
            setattr(user, name, value)
        await session.flush()
        return user

    return _make_user


def auth_headers(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(user.id, TokenType.ACCESS).token}"}


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
    yield TEST_DATABASE_URL.set(database=name).render_as_string(hide_password=False)
    await drop_database(name)
{%- else %}


@pytest.fixture
def empty_database_url(tmp_path: Path) -> str:
    """A second throwaway database with nothing in it."""
    return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
{%- endif %}
{%- if cookiecutter.use_b2_storage %}


def make_storage(simulator: RawSimulator, key_id: str, key: str) -> BackBlaze:
    """The B2 service on b2sdk's in-memory simulator instead of the real B2."""
    config = B2HttpApiConfig(_raw_api_class=lambda _http: simulator)
    return BackBlaze(key_id, key, api_config=config)


@pytest.fixture
def b2_simulator() -> RawSimulator:
    return RawSimulator()


@pytest.fixture
def b2_account(b2_simulator: RawSimulator) -> tuple[str, str]:
    key_id, key = b2_simulator.create_account()
    return key_id, key


@pytest.fixture(autouse=True)
async def b2_storage(
    b2_simulator: RawSimulator, b2_account: tuple[str, str]
) -> AsyncIterator[BackBlaze]:
    """Every test's storage: the simulator with the configured bucket, never the real B2."""
    storage = make_storage(b2_simulator, *b2_account)
    await storage.create_bucket(os.environ["B2_BUCKET_NAME"])
    storage.select_bucket(os.environ["B2_BUCKET_NAME"])
    app.dependency_overrides[get_storage] = lambda: storage
    yield storage
    app.dependency_overrides.pop(get_storage, None)
{%- endif %}
