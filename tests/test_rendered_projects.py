"""Run each functional variant's own tools in the rendered project.

The variants are database x use_b2_storage with the other answers at their defaults. The
tools come from the shared virtualenv (the one running this suite); the rendered project is
not installed into it: every tool runs with the project directory as its working directory.
"""

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from helpers import BIN, PYTHON, check, tool_env, variant_id

VARIANTS = [
    {"database": database, "use_b2_storage": b2}
    for database in ("sqlite", "postgresql")
    for b2 in (False, True)
]
# Admin connection for the throwaway migration databases (trust auth on the local server).
PG_ADMIN_DSN = os.environ.get(
    "TEMPLATE_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)]


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def database_url(variant, tmp_path) -> Iterator[str]:
    """A fresh, empty database for the variant; dropped afterwards."""
    if variant["database"] == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"tpl_migrations_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_rendered_pytest(render_once, variant):
    root = render_once(**variant)
    extra = {"REQUIRE_POSTGRES": "1"} if variant["database"] == "postgresql" else {}
    check([PYTHON, "-m", "pytest", "-p", "no:cacheprovider"], cwd=root, env=tool_env(**extra))


def test_rendered_mypy(render_once, variant, tmp_path_factory):
    root = render_once(**variant)
    # One cache per xdist worker: the third-party packages are analysed once per worker.
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    check([PYTHON, "-m", "mypy", "app"], cwd=root, env=tool_env(MYPY_CACHE_DIR=str(cache)))


def test_rendered_migrations(render_once, variant, database_url):
    """upgrade head -> check (no drift) -> downgrade base -> upgrade head on an empty database."""
    root = render_once(**variant)
    env = tool_env(DATABASE_URL=database_url)
    for step in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        check([PYTHON, "-m", "alembic", *step], cwd=root, env=env, timeout=300)


def test_rendered_ruff(render_once, variant):
    root = render_once(**variant)
    check([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=root)
    check([str(BIN / "ruff"), "format", "--check", "--no-cache", "."], cwd=root)
