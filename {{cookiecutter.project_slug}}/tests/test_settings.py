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
from tests.helpers import PROJECT_ROOT, TEST_SETTINGS, make_settings

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
    make_settings(current_environment=Environment.DEV, **{setting: value})  # allowed elsewhere
    with pytest.raises(ValidationError, match=setting.upper()):
        make_settings(
            current_environment=Environment.PROD, secret_key=STRONG_KEY, **{setting: value}
        )


def test_a_refused_value_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(access_token_expire_minutes="a-secret-looking-value")
    assert "a-secret-looking-value" not in str(info.value)


def test_without_a_key_the_server_stops_with_one_clear_line(tmp_path: Path) -> None:
    """`uvicorn app.main:app` with no `.env` and no SECRET_KEY: a one-line refusal."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "CURRENT_ENVIRONMENT"}
    }
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", "import app.main; app.main.app"],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
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
