"""Shared facts and helpers for the template's tests."""

import ast
import functools
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

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
