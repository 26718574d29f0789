"""The PostgreSQL variant behind a real PgBouncer in transaction mode (Debian's `pgbouncer`).

PgBouncer hands each transaction to any of its server connections, and refuses start-up
parameters it does not know. With DB_PGBOUNCER=true the rendered service must work through it:
its migrations, as a migration Job runs them, and a real part of its own suite (sign-up and
login, the users' routes, the races across connections, readiness, the statement timeout and
the application name reaching the server).

Without `pgbouncer` installed the tests skip; with REQUIRE_PGBOUNCER=1 (CI) they fail.
"""

import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PYTHON, check, tool_env
from servers import PG_ADMIN_DSN, free_port, tail, throwaway_database

pytestmark = pytest.mark.slow

REQUIRE_PGBOUNCER = os.environ.get("REQUIRE_PGBOUNCER") == "1"
VARIANT = {"database": "postgresql", "use_b2_storage": False, "use_redis": True}
# Fewer server connections than the service opens: clients share them, as in production.
SERVER_CONNECTIONS = 8
# The rendered tests run through PgBouncer. Left out: the two that must bypass it (one sends
# start-up parameters on purpose, one kills a server connection from a client that may be
# handed that same connection) and the command-line tests (their own processes, no
# DB_PGBOUNCER), whose migration this module runs itself.
RENDERED_TESTS = (
    "tests/test_auth.py",
    "tests/test_users.py",
    "tests/test_concurrency.py",
    "tests/test_health.py",
    "tests/test_migrations.py",
    "tests/test_database.py",
)
DESELECTED = (
    "tests/test_database.py::test_pgbouncer_mode_leaves_no_prepared_statements[False-True]",
    "tests/test_database.py::test_connection_killed_by_the_server_answers_503_then_recovers",
)


def pgbouncer_executable() -> str:
    executable = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if executable is None:
        reason = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if REQUIRE_PGBOUNCER:
            pytest.fail(f"{reason}, and REQUIRE_PGBOUNCER=1")
        pytest.skip(reason)
    return executable


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PgBouncer in transaction mode on a free port, in front of the local PostgreSQL, with
    its defaults otherwise (unknown start-up parameters refused). Yields its admin URL.
    """
    executable = pgbouncer_executable()
    directory = tmp_path_factory.mktemp("pgbouncer")
    server = urllib.parse.urlsplit(PG_ADMIN_DSN)
    user, password = server.username or "postgres", server.password or ""
    (directory / "users.txt").write_text(f'"{user}" "{password}"\n', encoding="utf-8")
    port = free_port()
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 500\n",
        encoding="utf-8",
    )
    cmd = [executable, str(ini)]
    if os.geteuid() == 0:
        cmd[1:1] = ["--user", "nobody"]  # PgBouncer refuses to run as root
    log = directory / "pgbouncer.log"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"pgbouncer exited {proc.returncode}:\n{tail(log)}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"pgbouncer did not listen:\n{tail(log)}"
                time.sleep(0.05)
        yield f"postgresql+asyncpg://{urllib.parse.quote(user)}@127.0.0.1:{port}/postgres"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def through(pgbouncer: str, database_url: str) -> str:
    """A database URL of the local server, rewritten to go through PgBouncer."""
    direct = urllib.parse.urlsplit(database_url)
    return urllib.parse.urlunsplit(direct._replace(netloc=urllib.parse.urlsplit(pgbouncer).netloc))


def test_migrations_run_through_pgbouncer(render_once, pgbouncer: str, tmp_path: Path) -> None:
    """`alembic upgrade head` from the command line, as a migration Job runs it."""
    root = render_once(**VARIANT)
    with throwaway_database("postgresql", tmp_path, "tpl_pgbouncer") as database_url:
        env = tool_env(DATABASE_URL=through(pgbouncer, database_url), DB_PGBOUNCER="true")
        for step in (["upgrade", "head"], ["check"]):
            check([PYTHON, "-m", "alembic", *step], cwd=root, env=env, timeout=300)


def test_rendered_suite_through_pgbouncer(render_once, pgbouncer: str) -> None:
    root = render_once(**VARIANT)
    env = tool_env(TEST_DATABASE_URL=pgbouncer, TEST_DB_PGBOUNCER="1")
    deselect = [f"--deselect={test}" for test in DESELECTED]
    pytest_cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-cov"]
    check([*pytest_cmd, *deselect, *RENDERED_TESTS], cwd=root, env=env, timeout=600)
