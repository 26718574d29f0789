"""Settings refuse what is unsafe, say so in one line, and never show a secret."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from pydantic import ValidationError

from app.core.config import Environment, Need, Settings
from app.main import create_app
from app.schemas.user import PasswordChange, UserCreate
from tests.helpers import MAIL_SETTINGS, TEST_SETTINGS, command_env, make_settings

STRONG_KEY = secrets.token_urlsafe(64)
WEAK_KEYS = {
    "placeholder": "change-me",
    "short": "0123456789abcdef",
    "one-letter": "a" * 40,
    "two-letters": "ab" * 20,
}
KEY_NOT_SET = (
    'SECRET_KEY is not set; generate one with: python -c "import secrets; '
    'print(secrets.token_urlsafe(64))"'
)
MAIL_NOT_SET = "SMTP_HOST, EMAIL_FROM, FRONTEND_URL must be set outside local"
{%- if cookiecutter.use_b2_storage %}
STORAGE_NOT_SET = "B2_APPLICATION_KEY_ID, B2_APPLICATION_KEY, B2_BUCKET_NAME must be set"
{%- endif %}
# `uvicorn app.main:app` in short: the module's `app` is built from the environment.
START_THE_API = "import app.main; app.main.app"
{%- if cookiecutter.use_redis %}
# What `taskiq worker app.worker:broker` calls first in each worker process.
START_A_WORKER = "import app.worker; app.worker.broker()"
{%- endif %}


@pytest.mark.parametrize("environment", list(Environment))
@pytest.mark.parametrize("key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_a_weak_key_is_refused_everywhere(environment: Environment, key: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY") as info:
        make_settings(current_environment=environment, secret_key=key)
    assert key not in str(info.value)


@pytest.mark.parametrize("environment", list(Environment))
def test_a_missing_key_is_refused_where_tokens_are_signed(environment: Environment) -> None:
    settings = make_settings(
        current_environment=environment, secret_key="", bcrypt_rounds=10, **MAIL_SETTINGS
    )
    assert settings.unmet(Need.TOKENS) == [KEY_NOT_SET]
    assert settings.unmet(Need.MAIL) == []


def test_the_default_environment_is_not_local() -> None:
    assert Settings.model_fields["current_environment"].default is Environment.PROD


@pytest.mark.parametrize(
    ("setting", "value"),
    [("cors_origins", ["*"]), ("cors_origins", ["https://ui.example", "*"]), ("bcrypt_rounds", 4)],
)
def test_prod_refuses_weak_settings(setting: str, value: object) -> None:
    # Allowed elsewhere.
    make_settings(current_environment=Environment.DEV, **MAIL_SETTINGS, **{setting: value})
    with pytest.raises(ValidationError, match=setting.upper()):
        make_settings(
            current_environment=Environment.PROD,
            secret_key=STRONG_KEY,
            **MAIL_SETTINGS,
            **{setting: value},
        )


def test_a_refused_value_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(access_token_expire_minutes="a-secret-looking-value")
    assert "a-secret-looking-value" not in str(info.value)


def start(directory: Path, env: dict[str, str], code: str = START_THE_API) -> str:
    """Run `code` (start the API, by default) in a directory with no `.env`, with only `env`
    of the service's settings; it must stop at once: the one line it says.
    """
    proc = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        cwd=directory,
        env=command_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    return line


def test_without_a_key_the_server_stops_with_one_clear_line(tmp_path: Path) -> None:
    line = start(tmp_path, {"CURRENT_ENVIRONMENT": "local"})
    assert line.startswith(f"Invalid settings: {KEY_NOT_SET}")


def test_the_api_refuses_to_start_without_any_setting_it_uses(tmp_path: Path) -> None:
    """The environment of a migration Job (tests/test_cli.py): the database alone."""
    line = start(tmp_path, {"CURRENT_ENVIRONMENT": "prod"})
    problems = [
        KEY_NOT_SET,
        {%- if not cookiecutter.use_redis %}
        MAIL_NOT_SET,
        {%- endif %}
        {%- if cookiecutter.use_b2_storage %}
        STORAGE_NOT_SET,
        {%- endif %}
    ]
    assert line.startswith("Invalid settings: ")
    assert [problem for problem in problems if problem not in line] == []
    {%- if cookiecutter.use_redis %}
    # The worker sends the mail; the API only queues it.
    assert "SMTP_HOST" not in line
    {%- endif %}


async def test_docs_left_on_in_prod_are_announced_at_start() -> None:
    lines: list[str] = []
    settings = make_settings(
        current_environment=Environment.PROD,
        secret_key=STRONG_KEY,
        bcrypt_rounds=12,
        docs_enabled=True,
        **MAIL_SETTINGS,
    )
    app = create_app(settings)
    sink = logger.add(lines.append, format="{message}")
    try:
        async with app.router.lifespan_context(app):
            pass
    finally:
        logger.remove(sink)
        create_app(TEST_SETTINGS)  # restore the test logging set-up
    assert any("API docs are on in prod" in line for line in lines), lines


def test_reprs_show_no_secret() -> None:
    settings = make_settings(
        database_url="postgresql+asyncpg://app:db-password-123@db.internal:5432/app"
    )
    shown = repr(settings) + str(settings)
    assert TEST_SETTINGS.secret_key.get_secret_value() not in shown
    assert "db-password-123" not in shown
    assert "app:**********@db.internal:5432" in shown
    user = UserCreate(
        username="someone",
        email="someone@example.com",
        first_name="Some",
        last_name="One",
        password="my very own password",
    )
    change = PasswordChange(current_password="the old one!", new_password="the new one!")
    for model in (user, change):
        assert "**********" in repr(model)
    assert "my very own password" not in repr(user)
    assert "the old one!" not in repr(change)
    assert "the new one!" not in repr(change)


def test_mail_settings_are_required_outside_local() -> None:
    assert make_settings().unmet(Need.MAIL) == []  # local: mail goes to the log
    for environment in (Environment.DEV, Environment.STAGING, Environment.PROD):
        settings = make_settings(
            current_environment=environment, secret_key=STRONG_KEY, bcrypt_rounds=10
        )
        [problem] = settings.unmet(Need.MAIL)
        assert problem.startswith(MAIL_NOT_SET)
        assert settings.unmet(Need.TOKENS) == []
    without_sender = {**MAIL_SETTINGS}
    del without_sender["email_from"]
    settings = make_settings(current_environment=Environment.STAGING, **without_sender)
    [problem] = settings.unmet(Need.MAIL)
    assert problem.startswith("EMAIL_FROM must be set")
    settings = make_settings(current_environment=Environment.STAGING, **MAIL_SETTINGS)
    assert settings.unmet(Need.MAIL) == []
    with pytest.raises(SystemExit, match="SMTP_USER and SMTP_PASSWORD go together"):
        settings.model_copy(update={"smtp_user": "me"}).require(Need.MAIL)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"smtp_tls": True, "smtp_starttls": True}, "SMTP_TLS and SMTP_STARTTLS exclude"),
        ({"frontend_url": "ftp://app.example.com"}, "frontend_url"),
        ({"frontend_url": "https://app.example.com/?a=1"}, "frontend_url"),
        ({"password_reset_path": "reset"}, "password_reset_path"),
        ({"rate_limit_password_reset_account": "often"}, "rate_limit_password_reset_account"),
    ],
    ids=["tls-twice", "not-http", "query", "relative-path", "rate"],
)
def test_inconsistent_mail_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(**values)


def test_an_empty_variable_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`SMTP_HOST=` in the environment or in `.env` means no server, not a host named "".

    Read from a real environment and file, so the test owns both.
    """
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("SMTP_HOST", "")
    env_file = tmp_path / ".env"
    env_file.write_text("SMTP_USER=\nSMTP_PASSWORD=\nSECRET_KEY=\n", encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert (settings.smtp_host, settings.smtp_user, settings.smtp_password) == (None, None, None)
    assert settings.unmet(Need.TOKENS) == [KEY_NOT_SET]


def test_a_trailing_slash_of_the_frontend_url_is_dropped() -> None:
    assert make_settings(frontend_url="http://localhost:3000/").frontend_url == (
        "http://localhost:3000"
    )


def test_outside_local_a_missing_mail_server_stops_the_start_with_one_line(
    tmp_path: Path,
) -> None:
    env = {"CURRENT_ENVIRONMENT": "staging", "SECRET_KEY": STRONG_KEY}
    {%- if cookiecutter.use_b2_storage %}
    env.update(B2_APPLICATION_KEY_ID="key-id", B2_APPLICATION_KEY="key", B2_BUCKET_NAME="bucket")
    {%- endif %}
    {%- if cookiecutter.use_redis %}
    # The worker sends the password-reset mail.
    line = start(tmp_path, env, START_A_WORKER)
    {%- else %}
    line = start(tmp_path, env)
    {%- endif %}
    assert line.startswith(f"Invalid settings: {MAIL_NOT_SET}")
{%- if cookiecutter.use_redis %}


def test_a_worker_needs_the_mail_settings_and_no_secret_of_the_api(tmp_path: Path) -> None:
    env = {"CURRENT_ENVIRONMENT": "prod"}
    line = start(tmp_path, env, START_A_WORKER)
    assert line.startswith(f"Invalid settings: {MAIL_NOT_SET}")
    assert "SECRET_KEY" not in line
    {%- if cookiecutter.use_b2_storage %}
    assert "B2_" not in line
    {%- endif %}
    mail = {"SMTP_HOST": "127.0.0.1", "EMAIL_FROM": "a@example.com", "FRONTEND_URL": "https://a.io"}
    proc = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", START_A_WORKER],
        cwd=tmp_path,
        env=command_env(**env, **mail),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_redelivery_must_outlast_a_job_and_its_retry_waits() -> None:
    # 60 s of job, retries after 10, 20, 30 and 40 s (the longest wait: 40 s plus 1 s of
    # jitter), and the 2 s margin: 103 s.
    values = {"job_timeout_seconds": 60, "job_retry_delay_seconds": 10, "job_max_attempts": 5}
    assert make_settings(**values, job_redeliver_after_seconds=103.5)
    with pytest.raises(ValidationError) as refused:
        make_settings(**values, job_redeliver_after_seconds=103)
    message = str(refused.value)
    assert "JOB_REDELIVER_AFTER_SECONDS=103 must be longer than JOB_TIMEOUT_SECONDS=60" in message
    assert "longest retry wait (41 s" in message
    # A job that is never retried waits for no retry.
    assert make_settings(job_timeout_seconds=1, job_max_attempts=1, job_redeliver_after_seconds=3.5)
{%- endif %}
