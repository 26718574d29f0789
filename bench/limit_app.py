"""The limit for `GET /api/v1/users/me` in `make bench`: the least code that does its job.

A bearer token is verified with PyJWT (each distinct token once, as the service's TokenCodec
caches it; expiry and type checked on every use), the user is read with one primary-key
SELECT straight through the driver (asyncpg; on SQLite, sqlite3 in one worker-thread hop) and
returned as JSON. It runs on the same stack as the service it is compared with (bench/serving.py
serves both with the same server command), against the service's own database, so what it
reaches is what this stack and this machine allow for that job.

Environment: DATABASE_URL and SECRET_KEY, the service's.
"""

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import FastAPI, Header, HTTPException

DATABASE_URL = os.environ["DATABASE_URL"]
SECRET_KEY = os.environ["SECRET_KEY"]
# The user as /users/me returns it, by primary key.
SELECT_USER = (
    "SELECT id, username, email, first_name, last_name, is_active, is_superuser, created_at,"
    " updated_at FROM users WHERE id = "
)


@lru_cache(maxsize=1024)
def verified(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET_KEY, algorithms=["HS256"], options={"verify_exp": False})


def claims(authorization: str | None) -> dict[str, Any]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Not authenticated")
    try:
        found = verified(token)
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, "Invalid token") from exc
    if found["exp"] <= time.time() or found.get("type") != "access":
        raise HTTPException(401, "Invalid token")
    return found


if DATABASE_URL.startswith("postgresql"):
    import asyncpg

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
        async with asyncpg.create_pool(dsn, min_size=10, max_size=10) as pool:
            app.state.pool = pool
            yield

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/api/v1/users/me")
    async def me(authorization: str | None = Header(None)) -> dict[str, Any]:
        user_id = uuid.UUID(claims(authorization)["sub"])
        row = await app.state.pool.fetchrow(SELECT_USER + "$1", user_id)
        if row is None:
            raise HTTPException(401, "User no longer exists")
        return dict(row)

else:
    DATABASE_PATH = urlsplit(DATABASE_URL).path.removeprefix("/")
    local = threading.local()

    def fetch_user(user_id: str) -> dict[str, Any] | None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = sqlite3.connect(DATABASE_PATH)
            connection.row_factory = sqlite3.Row
        row = connection.execute(SELECT_USER + "?", (uuid.UUID(user_id).hex,)).fetchone()
        return dict(row) if row is not None else None

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/users/me")
    async def me(authorization: str | None = Header(None)) -> dict[str, Any]:
        user_id = claims(authorization)["sub"]
        user = await asyncio.get_running_loop().run_in_executor(None, fetch_user, user_id)
        if user is None:
            raise HTTPException(401, "User no longer exists")
        return user


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
