"""Run each functional variant's own tools in the rendered project.

The variants are FUNCTIONAL_VARIANTS (every value of every code-changing option runs), on real
PostgreSQL and Redis servers, with the other answers at their defaults. The tools come from
the shared virtualenv (the one running this suite); the rendered project is not installed
into it: every tool runs with the project directory as its working directory.
"""

from collections.abc import Iterator

import pytest
from helpers import FUNCTIONAL_VARIANTS, PYTHON, check, tool_env, variant_id
from servers import throwaway_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("variant", FUNCTIONAL_VARIANTS, ids=variant_id),
]


@pytest.fixture
def database_url(variant, tmp_path) -> Iterator[str]:
    """A fresh, empty database for the variant; dropped afterwards."""
    with throwaway_database(str(variant["database"]), tmp_path, "tpl_migrations") as url:
        yield url


def test_rendered_pytest(render_once, variant):
    root = render_once(**variant)
    extra = {"REQUIRE_REDIS": "1"} if variant["use_redis"] else {}
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
