import asyncio
from collections.abc import Awaitable, Callable

{%- if cookiecutter.use_redis %}

from fastapi import APIRouter, Request
{%- else %}

from fastapi import APIRouter
{%- endif %}
from loguru import logger
from sqlalchemy import text

from app.api.v1.deps.db import DatabaseDep
{%- if cookiecutter.use_b2_storage %}
from app.api.v1.deps.storage import StorageDep
{%- endif %}
from app.core.exceptions import ServiceUnavailableError
from app.core.responses import error_responses

READINESS_TIMEOUT_SECONDS = 2.0

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def health() -> dict[str, str]:
    """Liveness: the process answers; touches no dependency."""
    return {"status": "ok"}


async def _answers(name: str, check: Callable[[], Awaitable[object]]) -> bool:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await check()
    except Exception:  # noqa: BLE001 - any failure means "down"
        logger.opt(exception=True).warning("Readiness check {} failed", name)
        return False
    return True


@router.get("/ready", responses=error_responses(503))
async def ready(
    database: DatabaseDep,
    {%- if cookiecutter.use_redis %}
    request: Request,
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    storage: StorageDep,
    {%- endif %}
) -> dict[str, str | dict[str, str]]:
    {%- if cookiecutter.use_redis or cookiecutter.use_b2_storage %}
    """Readiness: 503 only when the database, the one hard dependency, does not answer.

    Soft dependencies show their state in `checks` ("down") and `status` becomes "degraded",
    but the answer stays 200: their outage hits every replica at once, and taking them all
    out of the load balancer would turn a degraded service into no service.
    """
    {%- else %}
    """Readiness: 503 when the database does not answer."""
    {%- endif %}

    async def select_one() -> None:
        # A lone read: no transaction to begin, and on SQLite no wait for the write lock.
        async with database.read_connection() as connection:
            await connection.execute(text("SELECT 1"))

    if not await _answers("database", select_one):
        raise ServiceUnavailableError("Not ready: database unavailable")
    checks = {"database": "ok"}
    {%- if cookiecutter.use_redis %}
    checks["redis"] = "ok" if await _answers("redis", request.app.state.redis.ping) else "down"
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    checks["storage"] = "ok" if await _answers("storage", storage.check) else "down"
    {%- endif %}
    status = "ok" if all(state == "ok" for state in checks.values()) else "degraded"
    return {"status": status, "checks": checks}
