"""The PostgreSQL variant's suite never passes, or fails confusingly, without a server.

An unreachable server stops the run at once, non-zero, with one line that names
TEST_DATABASE_URL and how to start a server. An unused local port stands in for a stopped one.
"""

import re

import pytest
from helpers import PYTHON, run, tool_env

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"

pytestmark = pytest.mark.slow


def test_a_missing_server_stops_the_run_with_one_line(render_once):
    root = render_once(database="postgresql")
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    proc = run(cmd, cwd=root, env=tool_env(TEST_DATABASE_URL=UNREACHABLE))
    assert proc.returncode != 0, proc.stdout
    [line] = [line for line in proc.stdout.splitlines() if "is not reachable" in line]
    assert "TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:1/postgres" in line
    assert "docker compose up -d postgres" in line
    assert not re.search(r"\d+ (passed|skipped)", proc.stdout), proc.stdout
    assert "coverage" not in proc.stdout.lower(), proc.stdout
