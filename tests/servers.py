"""The servers a test (or the bench) runs: throwaway PostgreSQL databases, a rendered project
migrated and served until its /health answers, a logged-in token, a private Redis.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
from helpers import OUTPUT_TAIL, PYTHON, check

# Admin connection for the throwaway databases (trust auth on the local server).
PG_ADMIN_DSN = os.environ.get(
    "TEMPLATE_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# The mail settings every environment but local needs, for a rendered service run by a test
# (port 1: nothing listens, for tests that send no mail).
def mail_env(port: int = 1) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": "Template Tests <tests@example.com>",
        "FRONTEND_URL": "https://app.example.com",
    }


def pg_admin(statement: str, *args: object) -> object:
    """Run one statement on the admin connection of the local server; its first value."""

    async def go() -> object:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
        try:
            return await conn.fetchval(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def pg_database_url(name: str) -> str:
    """The service's DATABASE_URL for database `name` on the admin connection's server."""
    parts = urllib.parse.urlsplit(PG_ADMIN_DSN)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg", path=f"/{name}"))


@contextmanager
def throwaway_database(database: str, directory: Path, prefix: str) -> Iterator[str]:
    """A fresh, empty database for a rendered project (its DATABASE_URL); dropped afterwards.

    SQLite: a file in `directory`. PostgreSQL: a database named `prefix` plus a random suffix
    on the local server.
    """
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / f'{prefix}.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_database_url(name)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_with_superuser(
    root: Path, env: Mapping[str, str], *, username: str, email: str, password: str
) -> None:
    """Migrate a rendered project's database to head and create its superuser."""
    check([PYTHON, "-m", "alembic", "upgrade", "head"], cwd=root, env=env, timeout=120)
    superuser = ["create-superuser", "--email", email, "--username", username]
    # One argument, `--password=...`: a random password may begin with "-".
    check([PYTHON, "-m", "app.cli", *superuser, f"--password={password}"], root, env, timeout=120)


def access_token(base_url: str, username: str, password: str) -> str:
    """Log in to a served project; its access token."""
    form = {"username": username, "password": password}
    response = httpx.post(f"{base_url}/api/v1/auth/login", data=form, timeout=60)
    assert response.status_code == 200, f"login answered {response.status_code}: {response.text}"
    return str(response.json()["access_token"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text if len(text) <= OUTPUT_TAIL else "...\n" + text[-OUTPUT_TAIL:]


@contextmanager
def serve(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, base_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command until its GET /health answers 200; stop it (SIGINT) afterwards.

    Its output goes to `log`; a failure to start, or a death while in use, fails the test
    with the end of that log.
    """
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the service exited {proc.returncode}:\n{tail(log)}")
            try:
                health = httpx.get(f"{base_url}/health", timeout=2)
            except httpx.TransportError:
                pass
            else:
                if health.status_code != 200:
                    msg = f"GET /health answered {health.status_code}: {health.text[:300]}"
                    raise AssertionError(f"{msg}\n{tail(log)}")
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not start within 60 s:\n{tail(log)}")
            time.sleep(0.1)
        yield proc
        if proc.poll() is not None:
            raise AssertionError(f"the service died while in use:\n{tail(log)}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RedisServer:
    """A private redis-server on a free port, which the test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (Debian: apt-get install redis-server)"
        self.executable = executable
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.directory)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cli = ["redis-cli", "-p", str(self.port), "ping"]
            if subprocess.run(cli, capture_output=True, text=True, check=False).stdout == "PONG\n":
                return
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
