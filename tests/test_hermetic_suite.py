"""A rendered suite passes whatever settings the developer's shell exports.

A developer who sources `.env`, or uses direnv, runs the tests with the service's settings in
the environment. HOSTILE_VARIANT's suite runs once with every setting of its `.env.example`
(commented-out ones included) exported, and written to the project's `.env` too, each with a
working value that differs from the default and from the tests' own: another database file,
Redis database 5, a mail server on a port where none listens, `staging`, `DEBUG`... A test
that read any of them would fail.

`.env.example` is read when the test runs, so settings added later are covered without a
change here. Their value is derived from the example's: a number plus one, a boolean flipped,
a rate limit one higher; HOSTILE_VALUES holds the settings where that is not a working value
(URLs, hosts, names, JSON lists), and a string it does not know keeps the example's value (set,
if not different). Before the suite runs, the app checks that the environment is a working one
(every Need met), so a derived value that is refused fails here with its name, not as a
puzzling test failure.

The variant is SQLite + B2 + Redis: it has the most settings the tests must not read (B2's
required key and bucket, Redis, the job worker), and its suite is the quickest, as no database
server is involved. One run without xdist adds about 40 s.
"""

import re
import secrets
import shutil
from pathlib import Path

import pytest
from helpers import PYTHON, check, tool_env
from servers import free_port, throwaway_database

pytestmark = pytest.mark.slow

HOSTILE_VARIANT = {"database": "sqlite", "use_b2_storage": True, "use_redis": True}
# `NAME=value`, or `# NAME=value` (one word) for a setting the example leaves commented out.
SETTING_LINE = re.compile(r"([A-Z][A-Z0-9_]*)=(.*)|# ([A-Z][A-Z0-9_]*)=(\S*)")
RATE_LIMIT = re.compile(r"(\d+)/(\w+)")
DECIMAL = re.compile(r"\d+\.\d+")
HOSTILE_VALUES = {
    "CURRENT_ENVIRONMENT": "staging",
    "LOG_LEVEL": "DEBUG",
    "CORS_ORIGINS": '["https://hostile.example.org"]',
    "REDIS_URL": "redis://127.0.0.1:6379/5",
    "REDIS_KEY_PREFIX": "hostile",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_USER": "hostile",
    "SMTP_PASSWORD": "hostile-password",
    "EMAIL_FROM": "Hostile <hostile@example.org>",
    "FRONTEND_URL": "https://hostile.example.org",
    "PASSWORD_RESET_PATH": "/hostile-reset",
    "B2_APPLICATION_KEY_ID": "hostile-key-id",
    "B2_APPLICATION_KEY": "hostile-key",
    "B2_BUCKET_NAME": "hostile-bucket",
    "B2_REALM": "staging",
    "B2_ALLOWED_CONTENT_TYPES": '["text/plain"]',
    "POSTGRES_PASSWORD": "hostile",
}
# Every Need met: the environment would start each command of the service.
CHECK_SETTINGS = "from app.core.config import Need, load_settings; load_settings(*Need)"


def derived(value: str) -> str:
    """A working value other than `value`, by its form; `value` itself when none is known."""
    if value in {"true", "false"}:
        return "false" if value == "true" else "true"
    if value.isdigit():
        return str(int(value) + 1)
    if DECIMAL.fullmatch(value):
        return str(float(value) + 1)
    rate = RATE_LIMIT.fullmatch(value)
    if rate:
        return f"{int(rate.group(1)) + 1}/{rate.group(2)}"
    return value


def hostile_environment(example: str, directory: Path, database_url: str) -> dict[str, str]:
    """Every setting of `example` with a hostile value."""
    settings: dict[str, str] = {}
    for line in example.splitlines():
        match = SETTING_LINE.fullmatch(line)
        if match and match[1]:
            settings[match[1]] = match[2]
        elif match:
            settings.setdefault(match[3], match[4])
    fixed = {
        **HOSTILE_VALUES,
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": database_url,
        "SMTP_PORT": str(free_port()),
        "WORKER_HEARTBEAT_FILE": str(directory / "hostile-heartbeat"),
    }
    return {
        name: fixed[name] if name in fixed else derived(value) for name, value in settings.items()
    }


def test_the_suite_passes_in_a_hostile_environment(render_once, tmp_path):
    ignore = shutil.ignore_patterns(".pytest_cache", ".mypy_cache", "__pycache__", "*.db*")
    # A copy: the shared render's `.env` stays as the other tests expect it.
    project = shutil.copytree(render_once(**HOSTILE_VARIANT), tmp_path / "project", ignore=ignore)
    example = (project / ".env.example").read_text(encoding="utf-8")
    database = str(HOSTILE_VARIANT["database"])
    with throwaway_database(database, tmp_path, "hostile") as database_url:
        hostile = hostile_environment(example, tmp_path, database_url)
        (project / ".env").write_text(
            "".join(f"{name}={value}\n" for name, value in hostile.items()), encoding="utf-8"
        )
        env = tool_env(REQUIRE_REDIS="1", **hostile)
        check([PYTHON, "-c", CHECK_SETTINGS], cwd=project, env=env, timeout=60)
        check([PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=project, env=env)
