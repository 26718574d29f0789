import asyncio

from fastapi import APIRouter
from loguru import logger
from sqlalchemy import text
{% if cookiecutter.use_b2_storage %}
from app.api.v1.deps.storage import StorageDep
{%- endif %}
from app.core import db
from app.core.exceptions import ServiceUnavailableError
from app.core.responses import error_responses

READINESS_TIMEOUT_SECONDS = 2.0

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def health() -> dict[str, str]:
    """Liveness: the process answers; touches no dependency."""
    return {"status": "ok"}


async def _check_database() -> None:
    # A lone read: no transaction to begin, and on SQLite no wait for the write lock.
    async with db.read_connection() as connection:
        await connection.execute(text("SELECT 1"))


@router.get("/ready", responses=error_responses(503))
{%- if cookiecutter.use_b2_storage %}
async def ready(storage: StorageDep) -> dict[str, str | dict[str, str]]:
{%- else %}
async def ready() -> dict[str, str | dict[str, str]]:
{%- endif %}
    """Readiness: every dependency answers within a couple of seconds, or 503 names it."""
    checks = {"database": _check_database}
    {%- if cookiecutter.use_b2_storage %}
    checks["storage"] = storage.check
    {%- endif %}
    failed = []
    for name, check in checks.items():
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await check()
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            logger.opt(exception=True).warning("Readiness check {} failed", name)
            failed.append(name)
    if failed:
        raise ServiceUnavailableError(f"Not ready: {', '.join(failed)} unavailable")
    return {"status": "ok", "checks": dict.fromkeys(checks, "ok")}
