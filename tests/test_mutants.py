"""The rendered suite keeps its power to notice breakages that leave everything else green.

Each mutant is a one-line breakage of the rendered `app/` that once passed every rendered test
(found by mutation testing by hand). It is applied to a copy of the default render, and the
test written to catch it must then fail; the same tests pass on the unmutated copy, so a test
that fails for another reason cannot pass for a kill.
"""

import shutil
from pathlib import Path

import pytest
from helpers import PYTHON, run, tool_env

pytestmark = pytest.mark.slow

# id -> (file, original text, mutated text, the rendered test that must catch it)
MUTANTS = {
    "no-dummy-check-for-unknown-users": (
        "app/core/auth.py",
        "            bcrypt.checkpw(password[: field_sizes.PASSWORD_MAX_BYTES], "
        "self.dummy_hash())\n",
        "",
        "tests/test_auth.py::test_a_login_that_cannot_succeed_still_costs_one_check",
    ),
    "no-bcrypt-for-unknown-users": (
        "app/services/auth.py",
        "        limits.found(user)\n",
        "        limits.found(user)\n"
        "        if user is None:\n"
        '            raise AuthenticationError("Incorrect username or password")\n',
        "tests/test_auth.py::test_a_login_that_cannot_succeed_still_costs_one_check",
    ),
    "sqlite-foreign-keys-off": (
        "app/core/db.py",
        '        cursor.execute("PRAGMA foreign_keys=ON")\n',
        "",
        "tests/test_database.py::test_deleting_a_user_deletes_their_refresh_tokens",
    ),
    "sqlite-wal-off": (
        "app/core/db.py",
        '        cursor.execute("PRAGMA journal_mode=WAL")\n',
        "",
        "tests/test_database.py::test_a_long_read_does_not_block_a_write",
    ),
    "refresh-token-not-bound-to-its-user": (
        "app/services/auth.py",
        "if stored is None or user is None or stored.user_id != user.id:",
        "if stored is None or user is None:",
        "tests/test_tokens.py::test_refresh_token_is_bound_to_its_user",
    ),
    "plain-begin-for-writes": (
        "app/core/db.py",
        'connection.exec_driver_sql("BEGIN IMMEDIATE")',
        'connection.exec_driver_sql("BEGIN")',
        "tests/test_database.py::test_concurrent_read_then_write_requests_all_succeed",
    ),
}


def copy_render(root: Path, destination: Path) -> Path:
    ignore = shutil.ignore_patterns(".pytest_cache", ".mypy_cache", "__pycache__", "*.db*")
    shutil.copytree(root, destination, ignore=ignore)
    return destination


def run_tests(project: Path, *node_ids: str) -> tuple[int, str]:
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--no-cov", "-q", *node_ids]
    proc = run(cmd, cwd=project, env=tool_env(), timeout=300)
    return proc.returncode, proc.stdout


def test_the_killing_tests_pass_without_mutants(render_once, tmp_path):
    project = copy_render(render_once(), tmp_path / "pristine")
    tests = sorted({test for *_, test in MUTANTS.values()})
    code, output = run_tests(project, *tests)
    assert code == 0, output


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_rendered_suite_kills_the_mutant(render_once, tmp_path, mutant):
    path, original, mutated, test = MUTANTS[mutant]
    project = copy_render(render_once(), tmp_path / "mutant")
    source = project / path
    text = source.read_text(encoding="utf-8")
    assert text.count(original) == 1, f"{path} no longer holds the line this mutant changes"
    source.write_text(text.replace(original, mutated), encoding="utf-8")
    code, output = run_tests(project, test)
    # 1 is pytest's "some tests failed"; 2-5 (errors, usage, no tests) would prove nothing.
    assert code == 1, f"the mutant {mutant} survived {test}:\n{output}"
