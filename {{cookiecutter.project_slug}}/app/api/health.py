import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

{%- if cookiecutter.use_redis %}

from fastapi import APIRouter, Request
{%- else %}

from fastapi import APIRouter
{%- endif %}
from loguru import logger

from app.api.v1.deps.db import DatabaseDep, SchemaCheckDep
{%- if cookiecutter.use_b2_storage %}
from app.api.v1.deps.storage import StorageDep
{%- endif %}
from app.core.exceptions import SchemaOutOfDateError, ServiceUnavailableError
from app.core.migrations import UPGRADE_COMMAND, SchemaStatus
from app.core.responses import error_examples

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


@router.get("/ready", responses=error_examples(503, ServiceUnavailableError, SchemaOutOfDateError))
async def ready(
    database: DatabaseDep,
    schema_check: SchemaCheckDep,
    {%- if cookiecutter.use_redis %}
    request: Request,
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    storage: StorageDep,
    {%- endif %}
) -> dict[str, Any]:
    {%- if cookiecutter.use_redis or cookiecutter.use_b2_storage %}
    """Readiness: 503 only when the database, the one hard dependency, does not answer or is
    behind the code's migrations.

    Soft dependencies show their state in `checks` ("down") and `status` becomes "degraded",
    but the answer stays 200: their outage hits every replica at once, and taking them all
    out of the load balancer would turn a degraded service into no service.
    """
    {%- else %}
    """Readiness: 503 when the database does not answer or is behind the code's migrations."""
    {%- endif %}

    if not await _answers("database", partial(schema_check.read, database)):
        raise ServiceUnavailableError("Not ready: database unavailable")
    schema = schema_check.state
    if schema.status is SchemaStatus.BEHIND:
        # Not an outage: no pod of this code can serve until the migrations run.
        error = SchemaOutOfDateError(
            f"Not ready: the database schema is behind the code; run `{UPGRADE_COMMAND}`"
        )
        error.extra.update(checks={"database": str(schema.status)}, revisions=schema.revisions())
        raise error
    # A schema ahead of the code keeps the pod ready: the next release's migration runs before
    # its pods start, and the pods of this release serve meanwhile (docs/operations.md, "Faults").
    checks = {"database": str(schema.status)}
    {%- if cookiecutter.use_redis %}
    checks["redis"] = "ok" if await _answers("redis", request.app.state.redis.ping) else "down"
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}
    checks["storage"] = "ok" if await _answers("storage", storage.check) else "down"
    {%- endif %}
    status = "ok" if all(state == "ok" for state in checks.values()) else "degraded"
    return {"status": status, "checks": checks, "revisions": schema.revisions()}
