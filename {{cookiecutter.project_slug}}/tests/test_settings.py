"""Settings refuse what is unsafe, say so in one line, and never show a secret."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from pydantic import ValidationError

from app.core.config import Environment, Settings
from app.main import create_app
from app.schemas.user import PasswordChange, UserCreate
from tests.helpers import MAIL_SETTINGS, PROJECT_ROOT, TEST_SETTINGS, make_settings

STRONG_KEY = secrets.token_urlsafe(64)
WEAK_KEYS = {
    "missing": "",
    "placeholder": "change-me",
    "short": "0123456789abcdef",
    "one-letter": "a" * 40,
    "two-letters": "ab" * 20,
}


@pytest.mark.parametrize("environment", list(Environment))
@pytest.mark.parametrize("key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_a_missing_or_weak_key_is_refused_everywhere(environment: Environment, key: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY") as info:
        make_settings(current_environment=environment, secret_key=key)
    if key:
        assert key not in str(info.value)


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


def start_refused(directory: Path, env: dict[str, str]) -> str:
    """Start the app (as `uvicorn app.main:app` does) in a directory with no `.env`; it must
    stop at once: the one line it says.
    """
    proc = subprocess.run(
        [sys.executable, "-c", "import app.main; app.main.app"],
        cwd=directory,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    return line


def test_without_a_key_the_server_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "CURRENT_ENVIRONMENT"}
    }
    line = start_refused(tmp_path, env)
    assert line.startswith("Invalid settings: ")
    assert (
        "SECRET_KEY is not set; generate one with: "
        'python -c "import secrets; print(secrets.token_urlsafe(64))"'
    ) in line


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
    make_settings()  # local: mail goes to the log
    for environment in (Environment.DEV, Environment.STAGING, Environment.PROD):
        with pytest.raises(ValidationError) as info:
            make_settings(current_environment=environment, secret_key=STRONG_KEY)
        assert "SMTP_HOST, EMAIL_FROM, FRONTEND_URL must be set outside local" in str(info.value)
    without_sender = {**MAIL_SETTINGS}
    del without_sender["email_from"]
    with pytest.raises(ValidationError, match="EMAIL_FROM must be set"):
        make_settings(current_environment=Environment.STAGING, **without_sender)
    make_settings(current_environment=Environment.STAGING, **MAIL_SETTINGS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"smtp_tls": True, "smtp_starttls": True}, "SMTP_TLS and SMTP_STARTTLS exclude"),
        ({"smtp_user": "me"}, "SMTP_USER and SMTP_PASSWORD go together"),
        ({"frontend_url": "ftp://app.example.com"}, "frontend_url"),
        ({"frontend_url": "https://app.example.com/?a=1"}, "frontend_url"),
        ({"password_reset_path": "reset"}, "password_reset_path"),
        ({"rate_limit_password_reset_account": "often"}, "rate_limit_password_reset_account"),
    ],
    ids=["tls-twice", "user-without-password", "not-http", "query", "relative-path", "rate"],
)
def test_inconsistent_mail_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(**values)


def test_an_empty_smtp_host_means_none() -> None:
    settings = make_settings(smtp_host="", frontend_url="http://localhost:3000/")
    assert settings.smtp_host is None
    assert settings.frontend_url == "http://localhost:3000"


def test_outside_local_a_missing_mail_server_stops_the_start_with_one_line(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMTP_", "EMAIL_", "FRONTEND_"))
    }
    env.update(CURRENT_ENVIRONMENT="staging", SECRET_KEY=STRONG_KEY)
    {%- if cookiecutter.use_b2_storage %}
    env.update(B2_APPLICATION_KEY_ID="key-id", B2_APPLICATION_KEY="key", B2_BUCKET_NAME="bucket")
    {%- endif %}
    line = start_refused(tmp_path, env)
    assert line.startswith("Invalid settings: SMTP_HOST, EMAIL_FROM, FRONTEND_URL must be set")
{%- if cookiecutter.use_redis %}


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
