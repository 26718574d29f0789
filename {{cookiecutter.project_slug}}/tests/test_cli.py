import argparse
import io
import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import cli
from app.core.exceptions import ConflictError
from app.models import User
from tests.helpers import PROJECT_ROOT, TEST_DATABASE_URL, TEST_SETTINGS, RollbackDatabase


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


def run_cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "app.cli", *argv],
        input=stdin,
        cwd=PROJECT_ROOT,
        # The command reads its settings from the environment, as in production.
        env={**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "BCRYPT_ROUNDS": "4"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_command_line_end_to_end(clean_database: None) -> None:
    args = ["create-superuser", "--email", "admin@example.com", "--username", "admin"]
    created = run_cli(*args, "--password-stdin", stdin="long enough password\n")
    assert created.returncode == 0, created.stderr
    assert "Superuser admin created." in created.stdout
    assert created.stderr == ""

    duplicate = run_cli(*args, "--password", "long enough password")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    invalid = run_cli(
        "create-superuser", "--email", "nope", "--username", "x", "--password", "short"
    )
    assert invalid.returncode == 2
    assert "error: email" in invalid.stderr
    assert "error: password" in invalid.stderr
