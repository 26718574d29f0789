from collections.abc import AsyncIterator, Callable

import pytest
{%- if cookiecutter.use_redis %}
from fastapi import FastAPI
{%- endif %}
from httpx import AsyncClient

from app.core.db import Database
{%- if cookiecutter.use_redis %}
from app.core.redis import create_redis
{%- endif %}
from tests.helpers import MIGRATIONS_HEAD, make_settings


async def test_liveness_needs_no_database(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_checks_every_dependency(committed_client: AsyncClient) -> None:
    response = await committed_client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            {%- if cookiecutter.use_redis %}
            "redis": "ok",
            {%- endif %}
            {%- if cookiecutter.use_b2_storage %}
            "storage": "ok",
            {%- endif %}
        },
        "revisions": {"database": MIGRATIONS_HEAD, "code": MIGRATIONS_HEAD},
    }


@pytest.fixture
async def unreachable_database(unreachable_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_settings(make_settings(database_url=unreachable_database_url))
    yield database
    await database.dispose()


async def test_readiness_fails_when_the_database_is_down(
    committed_client: AsyncClient,
    use_database: Callable[[Database], None],
    unreachable_database: Database,
) -> None:
    use_database(unreachable_database)
    response = await committed_client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == "SERVICE_UNAVAILABLE"
    assert "database" in body["detail"]


async def test_liveness_holds_when_the_database_is_down(
    committed_client: AsyncClient,
    use_database: Callable[[Database], None],
    unreachable_database: Database,
) -> None:
    use_database(unreachable_database)
    assert (await committed_client.get("/health")).status_code == 200
{%- if cookiecutter.use_redis %}


async def test_readiness_reports_redis_down_and_stays_ready(
    app: FastAPI, committed_client: AsyncClient
) -> None:
    """Redis is a soft dependency: its outage must not take every replica out of service."""
    down = create_redis(make_settings(redis_url="redis://127.0.0.1:1/0"))
    # Swapped by hand: pytest's monkeypatch does not see attributes kept in Starlette's State
    # and would delete the app's client afterwards.
    redis, app.state.redis = app.state.redis, down
    try:
        response = await committed_client.get("/health/ready")
    finally:
        app.state.redis = redis
        await down.aclose()
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"] == "down"
    assert response.json()["checks"]["database"] == "ok"
{%- endif %}
