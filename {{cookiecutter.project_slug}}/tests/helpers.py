"""What the tests share: their settings, servers, and helpers to build users and tokens."""

import asyncio
{%- if cookiecutter.use_redis %}
import contextlib
{%- endif %}
import email
import email.policy
import os
{%- if cookiecutter.use_redis %}
import signal
import socket
import subprocess
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.use_redis %}
import time
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.use_redis %}
import uuid
{%- endif %}
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any
{% if cookiecutter.database == "postgresql" %}
import asyncpg
{%- endif %}
from aiosmtpd.smtp import SMTP, Envelope, Session
from alembic.config import Config
from alembic.script import ScriptDirectory
{%- if cookiecutter.use_b2_storage %}
from b2sdk.v2 import B2HttpApiConfig, RawSimulator
{%- endif %}
from httpx import AsyncClient
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from sqlalchemy import Executable, RowMapping, text
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy.engine import make_url
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
{%- if cookiecutter.use_redis %}
from taskiq.receiver import Receiver
{%- endif %}

from app.core.auth import TokenCodec, TokenType
from app.core.config import Settings
from app.core.db import Database
from app.jobs.broker import Jobs{% if not cookiecutter.use_redis %}, create_jobs{% endif %}
{%- if not cookiecutter.use_redis %}
from app.jobs.context import JobContext
{%- endif %}
from app.models import User
{%- if cookiecutter.use_b2_storage %}
from app.services.back_blaze_b2 import BackBlaze
{%- endif %}
{%- if not cookiecutter.use_redis %}
from app.services.email import EmailTemplates, Mailer
{%- else %}
from app.worker import Worker
{%- endif %}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
{%- if cookiecutter.database == "postgresql" %}
# The admin connection: the suite creates its own throwaway database next to it.
ADMIN_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# test_<project>_<creation time>_<random>: a run that was killed leaves its database behind,
# and the next run drops those older than STALE_DATABASE_SECONDS by this prefix and time.
TEST_DATABASE_PREFIX = "test_{{ cookiecutter.project_slug.replace('-', '_')[:30] }}_"
TEST_DATABASE_NAME = f"{TEST_DATABASE_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:6]}"
STALE_DATABASE_SECONDS = 2 * 3600
TEST_DATABASE_URL = (
    make_url(ADMIN_URL).set(database=TEST_DATABASE_NAME).render_as_string(hide_password=False)
)
# TEST_DB_PGBOUNCER=1: TEST_DATABASE_URL is a PgBouncer in transaction mode (DB_PGBOUNCER).
TEST_DB_PGBOUNCER = os.environ.get("TEST_DB_PGBOUNCER") == "1"
{%- else %}
TEST_DATABASE_DIR = Path(os.environ.get("TEST_DATABASE_DIR", PROJECT_ROOT / ".pytest_cache"))
TEST_DATABASE_PATH = TEST_DATABASE_DIR / f"test-{os.getpid()}.db"
TEST_DATABASE_URL = f"sqlite+aiosqlite:///{TEST_DATABASE_PATH}"
{%- endif %}
{%- if cookiecutter.use_redis %}
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"
# Every key of this run starts with it: parallel runs on one Redis never meet.
TEST_REDIS_PREFIX = f"test-{{ cookiecutter.project_slug }}-{uuid.uuid4().hex[:12]}"
{%- endif %}

DEFAULT_PASSWORD = "correct horse battery"
# What every environment but local must set (a mail server, its sender, the reset page).
MAIL_SETTINGS: dict[str, Any] = {
    "smtp_host": "127.0.0.1",
    "email_from": "Tests <tests@example.com>",
    "frontend_url": "https://app.example.com",
}


class ExplicitSettings(Settings):
    """Settings from the values given and the defaults only: neither the environment nor a
    `.env` file is read, so what a developer's shell exports (direnv, a sourced `.env`) changes
    no test.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def command_env(**variables: str) -> dict[str, str]:
    """The environment of a command the tests start (run it in a directory without `.env`):
    this one without any of the service's settings, plus `variables`, with the project
    importable.
    """
    inherited = {
        name: value
        for name, value in os.environ.items()
        # Settings read variables whatever their case.
        if name.lower() not in Settings.model_fields
    }
    return {**inherited, **variables, "PYTHONPATH": str(PROJECT_ROOT)}


def make_settings(**overrides: Any) -> Settings:
    """The tests' settings: nothing comes from the environment or `.env`."""
    values: dict[str, Any] = {
        "current_environment": "local",
        "database_url": TEST_DATABASE_URL,
        {%- if cookiecutter.database == "postgresql" %}
        "db_pgbouncer": TEST_DB_PGBOUNCER,
        {%- endif %}
        "secret_key": "test-secret-key-" + "0123456789abcdef" * 4,
        "bcrypt_rounds": 4,  # the minimum: tests check behaviour, not hashing cost
        "log_level": "WARNING",
        # The race tests sign up many users from one address; the limit has tests of its own.
        "rate_limit_signup": "1000/minute",
        {%- if cookiecutter.use_redis %}
        "redis_url": TEST_REDIS_URL,
        "redis_key_prefix": TEST_REDIS_PREFIX,
        {%- endif %}
        {%- if cookiecutter.use_b2_storage %}
        # Tests never reach the real B2: the `b2_storage` fixture replaces the storage.
        "b2_application_key_id": "test-key-id",
        "b2_application_key": "test-key",
        "b2_bucket_name": "test-bucket",
        {%- endif %}
    }
    return ExplicitSettings(**{**values, **overrides})


TEST_SETTINGS = make_settings()
TOKENS = TokenCodec.from_settings(TEST_SETTINGS)

UserFactory = Callable[..., Awaitable[User]]


def auth_headers(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.create(user.id, TokenType.ACCESS).token}"}


async def login_tokens(
    client: AsyncClient, username: str, password: str = DEFAULT_PASSWORD
) -> dict[str, str]:
    """The token pair of a login through the API that must succeed."""
    response = await client.post(
        "/api/v1/auth/login", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens

{%- if cookiecutter.database == "sqlite" %}


def impatient_database() -> Database:
    """The test database with a short busy timeout: a read that waited for SQLite's write lock
    would fail fast (503) instead of after the default 5 s.
    """
    return Database.from_settings(make_settings(db_busy_timeout_ms=300))
{%- else %}


def impatient_database() -> Database:
    """A second handle on the test database, for reads tried while a writer holds row locks
    (PostgreSQL's reads never wait for them).
    """
    return Database.from_settings(TEST_SETTINGS)
{%- endif %}


@asynccontextmanager
async def uncommitted_write(database: Database, statement: str) -> AsyncIterator[None]:
    """`statement` run in a transaction that stays open for the block, holding its locks, and
    is rolled back after it.
    """
    async with database.session_factory() as writer:
        await writer.execute(text(statement))
        yield
        await writer.rollback()


def alembic_config(settings: Settings) -> Config:
    """Alembic on these settings' database (handed to app/alembic/env.py)."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "app" / "alembic"))
    config.attributes["settings"] = settings
    return config


# The newest migration, as `alembic heads` sees it through alembic.ini.
MIGRATIONS_HEAD = ScriptDirectory.from_config(alembic_config(TEST_SETTINGS)).get_current_head()


{%- if cookiecutter.database == "postgresql" %}


async def _admin_connection() -> asyncpg.Connection:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    # No statement cache: named statements would collide behind PgBouncer.
    return await asyncpg.connect(dsn, statement_cache_size=0)


async def create_database(name: str) -> None:
    connection = await _admin_connection()
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    connection = await _admin_connection()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def drop_stale_databases(now: float | None = None) -> list[str]:
    """Drop the test databases that killed runs left behind: this project's prefix, created
    more than STALE_DATABASE_SECONDS ago (a run still going is younger). Returns their names.
    """
    now = time.time() if now is None else now
    connection = await _admin_connection()
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            TEST_DATABASE_PREFIX,
        )
    finally:
        await connection.close()
    stale = []
    for row in rows:
        created = row["datname"].removeprefix(TEST_DATABASE_PREFIX).split("_", 1)[0]
        if created.isdigit() and now - int(created) > STALE_DATABASE_SECONDS:
            await drop_database(row["datname"])
            stale.append(row["datname"])
    return stale
{%- endif %}


class RollbackDatabase(Database):
    """The app's database inside one test's transaction.

    Sessions bound to the test's connection only release a savepoint when they commit, so
    nothing outlives the test; lone reads (the current user) use that connection too, so they
    see the test's data.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self.engine = connection.engine
        self.session_factory = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        self.read_session_factory = self.session_factory
        self._connection = connection

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        yield self._connection

    async def lookup(self, statement: Executable, parameters: dict[str, Any]) -> RowMapping | None:
        return (await self._connection.execute(statement, parameters)).mappings().first()
{%- if cookiecutter.use_b2_storage %}


def make_storage(simulator: RawSimulator, key_id: str, key: str) -> BackBlaze:
    """The B2 service on b2sdk's in-memory simulator instead of the real B2."""
    config = B2HttpApiConfig(_raw_api_class=lambda _http: simulator)
    return BackBlaze(key_id, key, api_config=config)
{%- endif %}


class MailCatcher:
    """An aiosmtpd handler that keeps every message it accepts (the `smtp_server` fixture runs
    it on a real SMTP server on loopback).
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]

    async def wait_for(self, address: str, count: int = 1, within: float = 15) -> EmailMessage:
        """The `count`-th message to `address`, once it has arrived."""
        async with asyncio.timeout(within):
            # The server runs in a thread of its own, with its own event loop: poll.
            while len(self.to(address)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return self.to(address)[count - 1]


def mail_parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and the HTML part of a message."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None, message
    assert html is not None, message
    return str(text.get_content()), str(html.get_content())


@asynccontextmanager
async def running_jobs(settings: Settings) -> AsyncIterator[Jobs]:
    {%- if cookiecutter.use_redis %}
    """Jobs that run as in a worker process: a worker's broker consumes the queue in this event
    loop, each job going through taskiq's `Receiver.callback` as in `taskiq worker` (run,
    retries, acknowledgement). Yields the worker's jobs, to queue more on.

    One task reads the stream, so stopping is a plain cancellation of that read.
    """
    worker = Worker(settings)
    broker = worker.jobs.broker
    broker.is_worker_process = True
    await broker.startup()
    receiver = Receiver(broker, max_async_tasks=100, run_startup=False)
    running: set[asyncio.Task[None]] = set()

    async def consume() -> None:
        async for message in broker.listen():
            job = asyncio.create_task(receiver.callback(message))
            running.add(job)
            job.add_done_callback(running.discard)

    consuming = asyncio.create_task(consume())
    try:
        yield worker.jobs
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
        await asyncio.gather(*running, return_exceptions=True)
        await broker.shutdown()
    {%- else %}
    jobs = create_jobs(settings)
    database = Database.from_settings(settings)
    await jobs.start(JobContext(settings, database, Mailer(settings), EmailTemplates()))
    try:
        yield jobs
    finally:
        await jobs.stop()
        await database.dispose()
    {%- endif %}
{%- if cookiecutter.use_redis %}


class PrivateRedis:
    """A redis-server of the test's own on a free port, for outages made for real: stopped
    (nothing listens: connections are refused), frozen (SIGSTOP: connections are accepted by
    the kernel and nothing answers, as a hung server) and started again, empty.
    """

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(  # noqa: S603 - the server found on PATH, fixed arguments
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection,
            ):
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"redis-server did not answer on port {self.port} within 10 s")

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen server handles SIGTERM only then
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None
{%- endif %}
