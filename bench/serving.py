"""Serving: the rendered variants, their databases, and servers run as the Dockerfile runs them
on a server stack (the services' own, or another uvloop, asyncio or granian).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from helpers import PROJECT_TEMPLATE, check, full_answers, render_string
from servers import (
    access_token,
    free_port,
    mail_env,
    migrate_with_superuser,
    pg_admin,
    serve,
    throwaway_database,
)

from bench.config import ADMIN_PASSWORD, ADMIN_USER, BUILD, HOST, PYTHON, ROOT, log


@dataclass(frozen=True)
class Stack:
    """A server stack: the server, its event loop, and a package laid over the shared
    virtualenv (installed into build/bench/stacks/ and put first on PYTHONPATH).
    """

    name: str
    server: str = "uvicorn"
    loop: str | None = None  # uvicorn's --loop; None: as the Dockerfile serves (auto)
    requirement: str | None = None


def installed(package: str) -> str | None:
    with contextlib.suppress(PackageNotFoundError):
        return version(package)
    return None


# What the services run on: the Dockerfile's command with the shared virtualenv's packages,
# which are the rendered project's pins.
DEFAULT_STACK = Stack(f"uvicorn + uvloop {installed('uvloop')}")


def stack(spec: str) -> Stack:
    """BENCH_STACKS entries: `uvloop==X.Y.Z`, `asyncio`, `granian` or `granian==X.Y.Z`."""
    if spec.startswith("uvloop=="):
        wanted = spec.removeprefix("uvloop==")
        if wanted == installed("uvloop"):
            return DEFAULT_STACK
        return Stack(f"uvicorn + uvloop {wanted}", loop="uvloop", requirement=spec)
    if spec == "asyncio":
        return Stack("uvicorn + asyncio", loop="asyncio")
    if spec.split("==")[0] == "granian":
        return Stack(spec.replace("==", " "), server="granian", requirement=spec)
    raise ValueError(f"BENCH_STACKS: unknown stack {spec!r}")


def base_env() -> dict[str, str]:
    """The little of this environment a server or tool of the bench inherits."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ}


def overlay(requirement: str) -> Path:
    """A directory holding `requirement` alone (pip --target), installed once."""
    target = BUILD / "stacks" / re.sub(r"[^A-Za-z0-9.]+", "-", requirement)
    if not (target / ".installed").exists():
        shutil.rmtree(target, ignore_errors=True)
        log(f"installing {requirement} into {target.relative_to(ROOT)}")
        pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--no-deps"]
        check([*pip, "--target", str(target), requirement], ROOT, base_env(), timeout=300)
        (target / ".installed").touch()
    return target


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The rendered Dockerfile's CMD and its runtime stage's ENV (less the paths, which differ
    here): the services run as the image runs them.
    """
    text = render_string(
        (PROJECT_TEMPLATE / "Dockerfile").read_text(encoding="utf-8"), full_answers()
    ).replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1]
    command = re.search(r"^CMD (\[.*\])$", runtime, re.MULTILINE)
    if not command:
        raise RuntimeError("no CMD [...] in the rendered Dockerfile's runtime stage")
    env = {
        key: value
        for line in re.findall(r"^ENV (.*)$", runtime, re.MULTILINE)
        for key, value in re.findall(r"(\w+)=(\S+)", line)
        if key not in ("PATH", "PYTHONPATH")
    }
    return json.loads(command.group(1)), env


DOCKER_CMD, DOCKER_ENV = dockerfile()


def server_command(stack: Stack, app: str, port: int, workers: int) -> list[str]:
    if stack.server == "granian":
        cmd = [str(PYTHON), "-m", "granian", "--interface", "asgi", "--host", HOST]
        return [*cmd, "--port", str(port), "--workers", str(workers), app]
    if DOCKER_CMD[0] != "uvicorn":
        raise RuntimeError(f"the Dockerfile serves with {DOCKER_CMD[0]}, not uvicorn")
    cmd = [str(PYTHON), "-m", *DOCKER_CMD]
    cmd[cmd.index("app.main:app")] = app
    cmd[cmd.index("--host") + 1] = HOST
    cmd[cmd.index("--port") + 1] = str(port)
    return cmd + (["--loop", stack.loop] if stack.loop else [])


@dataclass
class Server:
    name: str
    port: int
    pid: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def serving(
    name: str,
    app: str,
    cwd: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    on: Stack = DEFAULT_STACK,
) -> Iterator[Server]:
    """`app` served as the Dockerfile serves the service, on the stack `on`, with `workers`
    processes (WEB_CONCURRENCY, which uvicorn and the app both read). With more than one,
    `pid` is the supervisor, which hands the listening socket to the workers.
    """
    port = free_port()
    env = DOCKER_ENV | env | {"WEB_CONCURRENCY": str(workers)}
    if on.requirement:
        env["PYTHONPATH"] = str(overlay(on.requirement))
    cmd = server_command(on, app, port, workers)
    with serve(cmd, cwd, env, BUILD / f"{name}.server.log", f"http://{HOST}:{port}") as proc:
        log(f"{name} serving on {HOST}:{port} (pid {proc.pid}, {workers} worker(s), {on.name})")
        yield Server(name, port, proc.pid)


def admin_token(server: Server) -> str:
    """The superuser's access token; returns once the server has hashed every password queued
    before it.
    """
    return access_token(server.base, ADMIN_USER, ADMIN_PASSWORD)


def pg_connections(database: str) -> int:
    return int(pg_admin("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database))


def render(variant: str, *, redis: bool = False) -> Path:
    """The variant rendered into build/bench/, without the .env a render writes: the image has
    none (.dockerignore), so the services see only the Dockerfile's and the bench's variables.
    """
    slug = f"bench-{variant}" + ("-redis" if redis else "")
    project = BUILD / slug
    shutil.rmtree(project, ignore_errors=True)
    cmd = [str(PYTHON.parent / "cookiecutter"), "--no-input", "--output-dir", str(BUILD), str(ROOT)]
    cmd += [f"project_slug={slug}", f"database={variant}", f"use_redis={'yes' if redis else 'no'}"]
    check(cmd, ROOT, base_env(), timeout=120)
    (project / ".env").unlink()
    log(f"rendered {variant}{' + redis' if redis else ''} into {project.relative_to(ROOT)}")
    return project


def dotenv(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def env_example(project: Path) -> dict[str, str]:
    return dotenv((project / ".env.example").read_text(encoding="utf-8"))


def pool(project: Path) -> dict[str, int]:
    """The database pool every process of the project opens (.env.example's defaults)."""
    config = env_example(project)
    return {
        "size": int(config.get("DB_POOL_SIZE", "10")),
        "max_overflow": int(config.get("DB_MAX_OVERFLOW", "5")),
    }


# Set on every service, on top of the Dockerfile's ENV: a fresh secret, and the log level of
# .env.example. Everything else is at the settings' defaults (the image reads no .env, and
# CURRENT_ENVIRONMENT unset is prod, which logs JSON lines).
SECRET_KEY = secrets.token_urlsafe(64)
LOG_LEVEL = dotenv(
    render_string((PROJECT_TEMPLATE / ".env.example").read_text(encoding="utf-8"), full_answers())
)["LOG_LEVEL"]
SERVED_AS = {
    "command": DOCKER_CMD,
    "dockerfile_env": DOCKER_ENV,
    "set": {
        "SECRET_KEY": f"<random, {len(SECRET_KEY)} characters>",
        "DATABASE_URL": "<a fresh database>",
        "LOG_LEVEL": f"{LOG_LEVEL} (.env.example's)",
    },
    "stack": DEFAULT_STACK.name,
}


def service_env() -> dict[str, str]:
    # The mail settings are required outside local; the bench sends no mail.
    return base_env() | {"SECRET_KEY": SECRET_KEY, "LOG_LEVEL": LOG_LEVEL} | mail_env()


@contextlib.contextmanager
def prepared(project: Path, variant: str, env: dict[str, str]) -> Iterator[str]:
    """A fresh database for the project (on PostgreSQL a throwaway one, dropped afterwards),
    migrated, with the bench's superuser; its URL is set in `env`, its name yielded.
    """
    with throwaway_database(variant, project, "bench") as url:
        env["DATABASE_URL"] = url
        migrate_with_superuser(
            project, env, username=ADMIN_USER, email="bench@example.com", password=ADMIN_PASSWORD
        )
        yield url.rpartition("/")[2]
