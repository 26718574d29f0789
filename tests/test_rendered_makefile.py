"""The rendered Makefile, followed as its README says: it finds .venv, says how to make one,
shows what migrations run, and writes no empty migration.
"""

import shutil

import pytest
from helpers import BIN, run, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture
def project(render_once, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(render_once(), root, ignore=shutil.ignore_patterns(".pytest_cache", "*.db*"))
    return root


def make(project, *args, database_url=None):
    env = tool_env(DATABASE_URL=database_url) if database_url else tool_env()
    return run(["make", *args], cwd=project, env=env, timeout=300)


def test_without_a_venv_make_says_how_to_make_one(project, tmp_path):
    # The python on PATH (the suite's own) has what it needs; the hint is printed all the same.
    proc = make(project, "migrate", database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert proc.returncode == 0, proc.stdout
    assert "(no .venv here: run `make venv` or `uv sync` first" in proc.stdout, proc.stdout
    assert "\npython -m alembic upgrade head" in proc.stdout


def test_make_uses_the_venv_and_shows_the_migrations(project, tmp_path):
    # The suite's virtualenv stands in for the one `make venv` would create.
    (project / ".venv").symlink_to(BIN.parent)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'make.db'}"
    migrated = make(project, "migrate", database_url=database_url)
    assert migrated.returncode == 0, migrated.stdout
    assert ".venv/bin/python -m alembic upgrade head" in migrated.stdout
    assert "no .venv here" not in migrated.stdout
    assert "Running upgrade  -> 0001" in migrated.stdout, migrated.stdout

    versions = sorted(p.name for p in (project / "app" / "alembic" / "versions").glob("*.py"))
    unchanged = make(project, "migration", "name=nothing changed", database_url=database_url)
    assert unchanged.returncode == 0, unchanged.stdout
    assert "No change in the models: no migration written." in unchanged.stdout
    after = sorted(p.name for p in (project / "app" / "alembic" / "versions").glob("*.py"))
    assert after == versions
