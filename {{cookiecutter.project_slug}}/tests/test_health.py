import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import db as core_db


async def test_liveness_needs_no_database(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_checks_the_database(committed_client: AsyncClient) -> None:
    response = await committed_client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


async def test_readiness_names_the_failing_database(
    committed_client: AsyncClient, monkeypatch: pytest.MonkeyPatch, unreachable_database_url: str
) -> None:
    broken = create_async_engine(unreachable_database_url)
    monkeypatch.setattr(core_db, "read_engine", core_db.read_only(broken))
    try:
        response = await committed_client.get("/health/ready")
    finally:
        await broken.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == "SERVICE_UNAVAILABLE"
    assert "database" in body["detail"]
