"""The PostgreSQL variant's suite never passes silently without a server.

With `REQUIRE_POSTGRES=1` an unreachable server fails the run; without it, every test is
skipped with the reason. An unused local port stands in for a stopped server.
"""

import re

import pytest
from helpers import PYTHON, run, tool_env

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"

pytestmark = pytest.mark.slow


def _pytest(root, **env):
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--no-cov", "-rs", "-q"]
    return run(cmd, cwd=root, env=tool_env(TEST_DATABASE_URL=UNREACHABLE, **env))


def test_required_postgres_fails_when_the_server_is_down(render_once):
    root = render_once(database="postgresql")
    proc = _pytest(root, REQUIRE_POSTGRES="1")
    assert proc.returncode != 0, proc.stdout
    assert "REQUIRE_POSTGRES=1" in proc.stdout
    assert not re.search(r"\d+ passed", proc.stdout), proc.stdout


def test_optional_postgres_is_skipped_with_the_reason(render_once):
    root = render_once(database="postgresql")
    proc = _pytest(root)
    assert proc.returncode == 0, proc.stdout
    assert "PostgreSQL is not reachable" in proc.stdout
    assert re.search(r"\d+ skipped", proc.stdout), proc.stdout
    assert not re.search(r"\d+ passed", proc.stdout), proc.stdout
