"""Shared facts and helpers for the template's tests."""

import ast
import asyncio
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
from cookiecutter.environment import StrictEnvironment
from install_rendered_deps import full_answers, render_string, template_environment
from jinja2 import FileSystemLoader

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
HOOKS_DIR = TEMPLATE_DIR / "hooks"
PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
# The shared virtualenv: every tool runs from the interpreter that runs the suite.
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")

COOKIECUTTER_JSON = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
CHOICES: dict[str, list[str]] = {
    key: value
    for key, value in COOKIECUTTER_JSON.items()
    if isinstance(value, list) and not key.startswith("_")
}
BOOLEANS: list[str] = [key for key, value in COOKIECUTTER_JSON.items() if isinstance(value, bool)]

OUTPUT_TAIL = 20_000  # characters of a failing tool's output shown in the assertion

# The functional variants, each running its own tests on real servers: every value of every
# option that changes code runs in at least one of them (the other answers at their defaults).
FUNCTIONAL_VARIANTS: list[dict[str, object]] = [
    {"database": "sqlite", "use_b2_storage": False, "use_redis": False},
    {"database": "sqlite", "use_b2_storage": True, "use_redis": True},
    {"database": "postgresql", "use_b2_storage": False, "use_redis": True},
    {"database": "postgresql", "use_b2_storage": True, "use_redis": False},
]


# The job worker's heartbeat file in the image (WORKER_HEARTBEAT_FILE's default under /tmp):
# its liveness probe reads the file's age.
HEARTBEAT_FILE = "/tmp/worker-heartbeat"  # noqa: S108


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


# Admin connection for the throwaway databases (trust auth on the local server).
PG_ADMIN_DSN = os.environ.get(
    "TEMPLATE_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _optional_files() -> dict[str, tuple[str, ...]]:
    """OPTIONAL_FILES from the post-gen hook: the hook's list is the only list."""
    tree = ast.parse((HOOKS_DIR / "post_gen_project.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "OPTIONAL_FILES" for t in targets):
                assert node.value is not None
                return ast.literal_eval(node.value)
    raise AssertionError("OPTIONAL_FILES not found in hooks/post_gen_project.py")


OPTIONAL_FILES = _optional_files()

# Files every variant renders (the contract's tree), relative to the project root.
BASE_FILES = (
    ".dockerignore",
    ".env",
    ".env.example",
    ".github/dependabot.yml",
    ".github/workflows/ci.yml",
    ".github/zizmor.yml",
    ".gitignore",
    ".hadolint.yaml",
    ".pre-commit-config.yaml",
    ".yamllint.yaml",
    "Dockerfile",
    "LICENSE",
    "Makefile",
    "README.md",
    "docs/development.md",
    "docs/operations.md",
    "docs/security.md",
    "alembic.ini",
    "docker-compose.yml",
    "pyproject.toml",
    "requirements-lint.txt",
    "app/__init__.py",
    "app/main.py",
    "app/cli.py",
    "app/api/__init__.py",
    "app/api/routes.py",
    "app/api/health.py",
    "app/api/v1/__init__.py",
    "app/api/v1/router.py",
    "app/api/v1/deps/__init__.py",
    "app/api/v1/deps/auth.py",
    "app/api/v1/deps/db.py",
    "app/api/v1/deps/rate_limit.py",
    "app/api/v1/endpoints/__init__.py",
    "app/api/v1/endpoints/auth.py",
    "app/api/v1/endpoints/user.py",
    "app/core/__init__.py",
    "app/core/config.py",
    "app/core/db.py",
    "app/core/auth.py",
    "app/core/exceptions.py",
    "app/core/logger.py",
    "app/core/responses.py",
    "app/core/field_sizes.py",
    "app/core/rate_limit.py",
    "app/core/error_handlers.py",
    "app/models/__init__.py",
    "app/models/base.py",
    "app/models/user.py",
    "app/models/refresh_token.py",
    "app/schemas/__init__.py",
    "app/schemas/base.py",
    "app/schemas/user.py",
    "app/schemas/token.py",
    "app/repos/__init__.py",
    "app/repos/base.py",
    "app/repos/user.py",
    "app/repos/refresh_token.py",
    "app/services/__init__.py",
    "app/services/auth.py",
    "app/middleware/__init__.py",
    "app/middleware/logging.py",
    "app/middleware/body_limit.py",
    "app/middleware/login_guard.py",
    "app/core/clock.py",
    "app/api/v1/deps/pagination.py",
    "app/alembic/env.py",
    "app/alembic/script.py.mako",
    "app/alembic/versions/0001_initial.py",
    "app/alembic/versions/0003_credentials_changed_at.py",
    "app/alembic/versions/0004_password_reset_tokens.py",
    "app/api/v1/deps/jobs.py",
    "app/jobs/__init__.py",
    "app/jobs/broker.py",
    "app/jobs/context.py",
    "app/jobs/password_reset.py",
    "app/models/password_reset_token.py",
    "app/repos/password_reset_token.py",
    "app/schemas/password_reset.py",
    "app/services/email.py",
    "app/services/housekeeping.py",
    "app/services/password_reset.py",
    "app/templates/email/password_reset.html",
    "app/templates/email/password_reset.subject.txt",
    "app/templates/email/password_reset.txt",
    "tests/conftest.py",
    "tests/helpers.py",
)


def default_answers(**overrides: object) -> dict[str, object]:
    """The answers cookiecutter would use with --no-input, with overrides applied."""
    answers = full_answers(**overrides)
    return {key: value for key, value in answers.items() if not key.startswith("_")}


@functools.cache
def _file_environment() -> StrictEnvironment:
    """cookiecutter's Jinja environment for the project template's files (compiled once)."""
    env = template_environment(full_answers())
    env.loader = FileSystemLoader(str(PROJECT_TEMPLATE))
    return env


def render_files(
    answers: Mapping[str, object], select: Callable[[str], bool] = lambda rel: True
) -> dict[str, str]:
    """The project files that `select` picks, rendered for these (full) answers as cookiecutter
    renders them, less the files the post-generation hook removes: {relative path: text}.

    Much cheaper than a whole render, for checks that need many combinations' files only.
    """
    env = _file_environment()
    disabled = set(disabled_files(answers))
    files = {}
    for path in sorted(PROJECT_TEMPLATE.rglob("*")):
        rel = path.relative_to(PROJECT_TEMPLATE).as_posix()
        if path.is_file() and rel not in disabled and select(rel) and "__pycache__" not in rel:
            files[rel] = env.get_template(rel).render(cookiecutter=answers)
    return files


def all_combinations() -> list[dict[str, object]]:
    """Every combination of the choice and boolean options."""
    keys = [*CHOICES, *BOOLEANS]
    values = [*CHOICES.values(), *([False, True] for _ in BOOLEANS)]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def variant_id(answers: Mapping[str, object]) -> str:
    parts = []
    if "python_version" in answers:
        parts.append(f"py{answers['python_version']}")
    if "license" in answers:
        parts.append(str(answers["license"]))
    parts.append(str(answers["database"]))
    parts.append("b2" if answers["use_b2_storage"] else "no_b2")
    if "use_redis" in answers:
        parts.append("redis" if answers["use_redis"] else "no_redis")
    return "-".join(parts)


def holds(condition: str, answers: Mapping[str, object]) -> bool:
    """An OPTIONAL_FILES condition: "option" (a yes/no answer is yes), "option=value", or
    several of those joined by " and ".
    """
    return all(
        answers[option] == value if value else bool(answers[option])
        for option, _, value in (part.partition("=") for part in condition.split(" and "))
    )


def disabled_files(answers: Mapping[str, object]) -> list[str]:
    return [
        name
        for condition, names in OPTIONAL_FILES.items()
        if not holds(condition, answers)
        for name in names
    ]


def enabled_files(answers: Mapping[str, object]) -> list[str]:
    return [
        name
        for condition, names in OPTIONAL_FILES.items()
        if holds(condition, answers)
        for name in names
    ]


def check_files(root: Path, answers: dict[str, object]) -> list[str]:
    problems = [f"missing {name}" for name in BASE_FILES if not (root / name).is_file()]
    problems += [
        f"missing {name}" for name in enabled_files(answers) if not (root / name).is_file()
    ]
    problems += [f"left over {name}" for name in disabled_files(answers) if (root / name).exists()]
    return problems


def text_files(root: Path) -> Iterator[tuple[Path, str]]:
    """(path, text) of every UTF-8 file below root."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a rendered project's tools: nothing of this pytest run leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "COV_CORE_", "MYPY", "RUFF_"))
        and key not in {"DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV", "REQUIRE_REDIS"}
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def check(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
) -> str:
    """Run a command; on failure, fail the test with the command and the end of its output."""
    proc = run(cmd, cwd, env, timeout)
    if proc.returncode != 0:
        output = proc.stdout
        if len(output) > OUTPUT_TAIL:
            output = "...\n" + output[-OUTPUT_TAIL:]
        shown = " ".join(cmd)
        raise AssertionError(
            f"`{shown}` exited {proc.returncode} in {cwd}\n----- output -----\n{output}"
        )
    return proc.stdout


def render_hook(name: str, answers: Mapping[str, object]) -> str:
    """The hook's source as cookiecutter renders it for these answers."""
    return render_string((HOOKS_DIR / f"{name}.py").read_text(encoding="utf-8"), answers)


def run_hook(
    name: str, answers: Mapping[str, object], cwd: Path
) -> subprocess.CompletedProcess[str]:
    script = cwd.parent / f"{cwd.name}-{name}.py"
    script.write_text(render_hook(name, answers), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    check([PYTHON, "-m", "app.cli", *superuser, "--password", password], root, env, timeout=120)


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
