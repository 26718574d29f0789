import argparse
import io
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import cli
from app.core.clock import utc_now
from app.core.exceptions import ConflictError
from app.models import PasswordResetToken, RefreshToken, User
from tests.helpers import (
    PROJECT_ROOT,
    TEST_DATABASE_URL,
    TEST_SETTINGS,
    RollbackDatabase,
    UserFactory,
    command_env,
)


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["create-superuser", *argv])


def test_password_is_prompted_when_omitted() -> None:
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return "typed at the prompt"

    data = cli.user_from_args(parse("--email", "a@b.io", "--username", "root"), prompt)
    assert prompts == ["Password: "]
    assert data.password.get_secret_value() == "typed at the prompt"


def test_password_from_standard_input() -> None:
    args = parse("--email", "a@b.io", "--username", "root", "--password-stdin")
    assert cli.read_password(args, stdin=io.StringIO("from a pipe\n")) == "from a pipe"


def test_password_on_the_command_line_works_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse("--email", "a@b.io", "--username", "root", "--password", "p" * 12)
    assert cli.read_password(args) == "p" * 12
    assert "warning: --password shows the password" in capsys.readouterr().err


def test_password_sources_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("--email", "a@b.io", "--username", "r", "--password", "x", "--password-stdin")


async def test_create_superuser(session: AsyncSession) -> None:
    database = RollbackDatabase(await session.connection())
    data = cli.user_from_args(
        parse("--email", "Root@B.io", "--username", "root", "--password", "p" * 12)
    )
    user = await cli.create_superuser(database, TEST_SETTINGS, data)
    stored = await session.scalar(select(User).where(User.id == user.id))
    assert stored is not None
    assert stored.is_superuser
    assert stored.email == "root@b.io"
    with pytest.raises(ConflictError):
        await cli.create_superuser(database, TEST_SETTINGS, data)


def run(
    command: list[str], directory: Path, stdin: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    """A command run as in production: in a directory with no `.env`, its settings from the
    environment, and only these of the service's.
    """
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", *command],
        input=stdin,
        cwd=directory,
        env=command_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_cli(
    directory: Path, *argv: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    settings = {
        "DATABASE_URL": TEST_DATABASE_URL,
        "CURRENT_ENVIRONMENT": "local",
        "BCRYPT_ROUNDS": "4",
    }
    return run(["app.cli", *argv], directory, stdin, **settings)


def test_command_line_end_to_end(clean_database: None, tmp_path: Path) -> None:
    args = ["create-superuser", "--email", "admin@example.com", "--username", "admin"]
    created = run_cli(tmp_path, *args, "--password-stdin", stdin="long enough password\n")
    assert created.returncode == 0, created.stderr
    assert "Superuser admin created." in created.stdout
    assert created.stderr == ""

    duplicate = run_cli(tmp_path, *args, "--password", "long enough password")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    invalid = run_cli(
        tmp_path, "create-superuser", "--email", "nope", "--username", "x", "--password", "short"
    )
    assert invalid.returncode == 2
    assert "error: email" in invalid.stderr
    assert "error: password" in invalid.stderr


async def test_purge_deletes_expired_tokens_and_keeps_live_ones(
    session: AsyncSession, make_user: UserFactory
) -> None:
    user = await make_user()
    now = utc_now()
    leeway = timedelta(seconds=TEST_SETTINGS.token_leeway_seconds)
    refresh = {
        "expired": now - leeway - timedelta(seconds=1),
        "within leeway": now - leeway + timedelta(seconds=5),
        "live": now + timedelta(days=1),
    }
    for expires_at in refresh.values():
        session.add(RefreshToken(user_id=user.id, family_id=uuid.uuid4(), expires_at=expires_at))
    resets = {"expired": now - timedelta(seconds=1), "live": now + timedelta(minutes=5)}
    for name, expires_at in resets.items():
        session.add(
            PasswordResetToken(
                user_id=user.id,
                request_id=uuid.uuid4(),
                token_hash=name.ljust(64, "0"),
                requested_at=now - timedelta(minutes=30),
                expires_at=expires_at,
                used_at=now if name == "live" else None,
            )
        )
    await session.flush()

    purged = await cli.purge(RollbackDatabase(await session.connection()), TEST_SETTINGS)
    assert (purged.refresh_tokens, purged.password_reset_tokens) == (1, 1)
    left = await session.scalars(select(RefreshToken.expires_at))
    assert sorted(left.all()) == [refresh["within leeway"], refresh["live"]]
    assert (await session.scalars(select(PasswordResetToken.token_hash))).all() == [
        "live".ljust(64, "0")
    ]


def test_purge_from_the_command_line(clean_database: None, tmp_path: Path) -> None:
    purged = run_cli(tmp_path, "purge-expired")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == (
        "Purged 0 expired refresh token(s) and 0 expired password-reset token(s).\n"
    )


def test_migrations_and_commands_need_only_the_database_settings(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Migrating and the commands in prod with the database settings alone: no secret but the
    database's (the API refuses to start so: tests/test_settings.py).
    """
    settings = {"DATABASE_URL": empty_database_url, "CURRENT_ENVIRONMENT": "prod"}
    alembic_ini = str(PROJECT_ROOT / "alembic.ini")
    migrated = run(["alembic", "-c", alembic_ini, "upgrade", "head"], tmp_path, **settings)
    assert migrated.returncode == 0, migrated.stderr
    assert "Running upgrade" in migrated.stderr
    args = ["create-superuser", "--email", "root@example.com", "--username", "root"]
    created = run(["app.cli", *args, "--password-stdin"], tmp_path, "a long password\n", **settings)
    assert created.returncode == 0, created.stderr
    purged = run(["app.cli", "purge-expired"], tmp_path, **settings)
    assert purged.returncode == 0, purged.stderr
