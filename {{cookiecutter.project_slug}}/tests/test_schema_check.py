"""A database that is not migrated for the code is reported as such, not as an outage: readiness
names both revisions, routes answer 503 SCHEMA_OUT_OF_DATE without `Retry-After`, and the
start-up log names what is missing and the command that applies it.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from loguru import logger
from sqlalchemy import event, text

{% if cookiecutter.use_b2_storage -%}
from app.api.v1.deps.storage import get_storage
{% endif -%}
from app.core.db import Database
from app.core.migrations import SchemaCheck
from app.main import create_app
{%- if cookiecutter.use_b2_storage %}
from app.services.back_blaze_b2 import BackBlaze
{%- endif %}
from tests.helpers import (
    MIGRATIONS_HEAD,
    PROJECT_ROOT,
    TEST_SETTINGS,
    alembic_config,
    make_settings,
)

HEAD = MIGRATIONS_HEAD
SIGNUP = {
    "username": "early",
    "email": "early@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "password": "a sound password",
}


@dataclass
class Served:
    client: AsyncClient
    app: FastAPI
    logged: list[str]  # every line so far
    logged_at_start: list[str]  # the lines of the start-up, before any request


Serve = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def served({% if cookiecutter.use_b2_storage %}b2_storage: BackBlaze{% endif %}) -> Serve:
    """What serves an app of its own on a database (and settings): its lifespan running, a
    client, and what it logs.
    """

    @asynccontextmanager
    async def serve(database_url: str, **settings: Any) -> AsyncIterator[Served]:
        app = create_app(make_settings(database_url=database_url, **settings))
        {%- if cookiecutter.use_b2_storage %}

        async def simulated_storage() -> BackBlaze:
            return b2_storage  # readiness checks it: the simulator, never the real B2

        app.dependency_overrides[get_storage] = simulated_storage
        {%- endif %}
        lines: list[str] = []
        sink = logger.add(lines.append, format="{level} {message}", level="INFO")
        try:
            async with (
                app.router.lifespan_context(app),
                AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
            ):
                yield Served(client, app, lines, list(lines))
        finally:
            logger.remove(sink)
            create_app(TEST_SETTINGS)  # restore the test logging set-up

    return serve


@contextmanager
def recorded_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every statement the app's database engine sends within the block."""
    sent: list[str] = []
    engine = app.state.database.engine.sync_engine

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def revision_reads(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "alembic_version" in sql]


async def migrate(database_url: str, revision: str) -> None:
    # Alembic runs its own event loop, so it gets a thread of its own.
    config = alembic_config(make_settings(database_url=database_url))
    await asyncio.to_thread(command.upgrade, config, revision)


async def execute(database_url: str, statement: str) -> None:
    database = Database.from_settings(make_settings(database_url=database_url))
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await database.dispose()


def assert_schema_out_of_date(response: Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error_code"] == "SCHEMA_OUT_OF_DATE"
    # Retrying does not help until someone migrates: no Retry-After.
    assert "retry-after" not in response.headers


async def test_a_database_never_migrated_is_not_an_outage(
    served: Serve, empty_database_url: str
) -> None:
    async with served(empty_database_url) as service:
        ready = await service.client.get("/health/ready")
        with recorded_statements(service.app) as statements:
            signup = await service.client.post("/api/v1/auth/signup", json=SIGNUP)
            login = await service.client.post(
                "/api/v1/auth/login", data={"username": "early", "password": "a sound password"}
            )
    assert_schema_out_of_date(ready)
    assert ready.json()["checks"] == {"database": "schema behind"}
    assert ready.json()["revisions"] == {"database": None, "code": HEAD}
    assert "alembic upgrade head" in ready.json()["detail"]
    assert_schema_out_of_date(signup)
    assert_schema_out_of_date(login)
    # Once the schema is known to be behind, a failing request costs no revision read.
    assert statements
    assert not revision_reads(statements)
    [start] = [line for line in service.logged_at_start if "schema is behind" in line]
    assert start.startswith("ERROR ")
    assert "never migrated" in start
    assert f"{HEAD} (" in start
    assert "`alembic upgrade head`" in start
    # Logged once, not again by every readiness check or failing request.
    assert [line for line in service.logged if "schema is behind" in line] == [start]


@pytest.mark.parametrize(
    ("stop_at", "route"),
    [
        # The last migration's table is missing: a password-reset confirmation reads it.
        ("head-1", ("POST", "/api/v1/auth/password-reset/confirm")),
        # A column of users that 0003 adds is missing: a signup writes it.
        ("0003-1", ("POST", "/api/v1/auth/signup")),
    ],
    ids=["table", "column"],
)
async def test_a_database_behind_the_code_answers_503_until_migrated(
    served: Serve, empty_database_url: str, stop_at: str, route: tuple[str, str]
) -> None:
    await migrate(empty_database_url, stop_at)
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/auth/password-reset/confirm": {
            "token": "x" * 43,
            "new_password": "another sound password",
        },
        "/api/v1/auth/signup": SIGNUP,
    }
    method, path = route
    async with served(empty_database_url) as service:
        ready = await service.client.get("/health/ready")
        refused = await service.client.request(method, path, json=bodies[path])
        # The operator migrates; the next readiness check sees it, and the route works.
        await migrate(empty_database_url, "head")
        ready_after = await service.client.get("/health/ready")
        served_after = await service.client.request(method, path, json=bodies[path])
    assert_schema_out_of_date(ready)
    assert ready.json()["checks"] == {"database": "schema behind"}
    database_revision = ready.json()["revisions"]["database"]
    assert database_revision not in {None, HEAD}
    assert ready.json()["revisions"]["code"] == HEAD
    assert_schema_out_of_date(refused)
    [start] = [line for line in service.logged_at_start if "schema is behind" in line]
    assert f"at revision {database_revision}, missing " in start
    assert f"{HEAD} (" in start
    assert "`alembic upgrade head`" in start
    assert ready_after.status_code == 200, ready_after.text
    assert ready_after.json()["revisions"] == {"database": HEAD, "code": HEAD}
    assert served_after.status_code in {201, 204, 400}, served_after.text
    assert any(f"at the code's revision {HEAD}" in line for line in service.logged)


async def test_a_schema_ahead_of_the_code_keeps_serving_what_it_has(
    served: Serve,
    empty_database_url: str,
) -> None:
    """The next release migrated first (or this code was rolled back): this code stays ready and
    serves; a route that meets a column the newer schema dropped answers 503.
    """
    await migrate(empty_database_url, "head")
    await execute(empty_database_url, "UPDATE alembic_version SET version_num = '9999_newer'")
    async with served(empty_database_url) as service:
        ready = await service.client.get("/health/ready")
        signup = await service.client.post("/api/v1/auth/signup", json=SIGNUP)
        await execute(empty_database_url, "ALTER TABLE users DROP COLUMN credentials_changed_at")
        after_drop = await service.client.post(
            "/api/v1/auth/signup", json={**SIGNUP, "username": "later", "email": "l@example.com"}
        )
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["database"] == "schema ahead"
    assert ready.json()["revisions"] == {"database": "9999_newer", "code": HEAD}
    assert signup.status_code == 201, signup.text
    assert_schema_out_of_date(after_drop)
    [start] = [line for line in service.logged_at_start if "schema is ahead" in line]
    assert start.startswith("WARNING ")
    assert f"at revision 9999_newer, which this code does not know (its newest is {HEAD})" in start


async def test_a_missing_table_at_the_code_s_revision_is_a_bug(empty_database_url: str) -> None:
    """The database is at head, so the query itself is wrong: a 500, not a 503 that blames the
    migrations.
    """
    await migrate(empty_database_url, "head")
    await execute(empty_database_url, "DROP TABLE password_reset_tokens")
    app = create_app(make_settings(database_url=empty_database_url))
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        response = await client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": "x" * 43, "new_password": "another sound password"},
        )
    assert response.status_code == 500
    assert response.json()["error_code"] == "INTERNAL_ERROR"


async def test_reading_the_revision_logs_nothing(served: Serve, empty_database_url: str) -> None:
    """Readiness probes read it every few seconds: a read that finds nothing new adds no line."""
    await migrate(empty_database_url, "head")
    # At INFO, where Alembic's own lines would show.
    async with served(empty_database_url, log_level="INFO") as service:
        logged_before = len(service.logged)
        for _ in range(3):
            state = await service.app.state.schema_check.read(service.app.state.database)
            assert state.database_revision == HEAD
        assert service.logged[logged_before:] == []


async def test_a_request_reads_no_revision(app: FastAPI, committed_client: AsyncClient) -> None:
    """The revision is read at start and in readiness, never on a request's own path."""
    with recorded_statements(app) as statements:
        signup = await committed_client.post("/api/v1/auth/signup", json=SIGNUP)
        assert signup.status_code == 201, signup.text
        login = await committed_client.post(
            "/api/v1/auth/login", data={"username": "early", "password": "a sound password"}
        )
        assert login.status_code == 200, login.text
        assert statements  # the requests' own statements were seen
        assert not revision_reads(statements)
        ready = await committed_client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["revisions"] == {"database": HEAD, "code": HEAD}
    assert revision_reads(statements)


def test_the_code_revision_is_found_from_any_working_directory(tmp_path: Path) -> None:
    """As in the image or an installed wheel: the migrations are found next to the package, not
    through alembic.ini in the working directory.
    """
    script = (
        "from app.core.migrations import SchemaCheck; print(SchemaCheck.of_code().code_revision)"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    found = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == HEAD
    assert SchemaCheck.of_code().code_revision == HEAD


def test_every_revision_is_known_to_the_check() -> None:
    check = SchemaCheck.of_code()
    revisions = ScriptDirectory.from_config(alembic_config(TEST_SETTINGS)).walk_revisions()
    for script in revisions:
        expected = "ok" if script.revision == HEAD else "schema behind"
        assert check.compare(script.revision).status == expected
    assert check.compare(None).status == "schema behind"
    assert check.compare("9999_newer").status == "schema ahead"
