"""The rendered suite keeps its power to notice breakages that leave everything else green.

Each mutant is a one-line breakage of the rendered `app/` that once passed every rendered test
(found by mutation testing by hand). It is applied to a copy of the default render, and the
test written to catch it must then fail; the same tests pass on the unmutated copy, so a test
that fails for another reason cannot pass for a kill. A mutant of code that only some variants
render names its variant (the other answers at their defaults).
"""

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import PYTHON, run, tool_env


class Mutant(NamedTuple):
    path: str  # a file of the rendered project
    original: str  # text that occurs once in it
    mutated: str  # what replaces it
    test: str  # the rendered test that must catch it
    variant: tuple[tuple[str, object], ...] = ()  # answers other than the defaults


pytestmark = pytest.mark.slow

# id -> the breakage; a mutant of code that only some variants render names its variant.
MUTANTS: dict[str, Mutant] = {
    "no-dummy-check-for-unknown-users": Mutant(
        "app/core/auth.py",
        "            bcrypt.checkpw(password[: field_sizes.PASSWORD_MAX_BYTES], "
        "self.dummy_hash())\n",
        "",
        "tests/test_auth.py::test_a_login_that_cannot_succeed_still_costs_one_check",
    ),
    "no-bcrypt-for-unknown-users": Mutant(
        "app/services/auth.py",
        "        limits.found(user)\n",
        "        limits.found(user)\n"
        "        if user is None:\n"
        '            raise AuthenticationError("Incorrect username or password")\n',
        "tests/test_auth.py::test_a_login_that_cannot_succeed_still_costs_one_check",
    ),
    "sqlite-foreign-keys-off": Mutant(
        "app/core/db.py",
        '        cursor.execute("PRAGMA foreign_keys=ON")\n',
        "",
        "tests/test_database.py::test_deleting_a_user_deletes_their_refresh_tokens",
    ),
    "sqlite-wal-off": Mutant(
        "app/core/db.py",
        '        cursor.execute("PRAGMA journal_mode=WAL")\n',
        "",
        "tests/test_database.py::test_a_long_read_does_not_block_a_write",
    ),
    "refresh-token-not-bound-to-its-user": Mutant(
        "app/services/auth.py",
        "if stored is None or user is None or stored.user_id != user.id:",
        "if stored is None or user is None:",
        "tests/test_tokens.py::test_refresh_token_is_bound_to_its_user",
    ),
    "plain-begin-for-writes": Mutant(
        "app/core/db.py",
        'connection.exec_driver_sql("BEGIN IMMEDIATE")',
        'connection.exec_driver_sql("BEGIN")',
        "tests/test_database.py::test_concurrent_read_then_write_requests_all_succeed",
    ),
    "job-acknowledged-before-it-runs": Mutant(
        "app/jobs/broker.py",
        "ack_type=AcknowledgeType.WHEN_SAVED.value,",
        "ack_type=AcknowledgeType.WHEN_RECEIVED.value,",
        "tests/test_worker.py::test_a_job_is_acknowledged_only_once_it_has_finished",
        (("use_redis", True),),
    ),
    "positional-job-arguments-logged": Mutant(
        "app/jobs/logged.py",
        '**{f"#{n}": MASK for n in range(len(message.args))}',
        '**{f"#{n}": argument for n, argument in enumerate(message.args)}',
        "tests/test_jobs.py::test_positional_arguments_are_masked_when_a_job_fails_for_good",
    ),
}


def copy_render(root: Path, destination: Path) -> Path:
    ignore = shutil.ignore_patterns(".pytest_cache", ".mypy_cache", "__pycache__", "*.db*")
    shutil.copytree(root, destination, ignore=ignore)
    return destination


def run_tests(project: Path, variant: dict[str, object], *node_ids: str) -> tuple[int, str]:
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--no-cov", "-q", *node_ids]
    extra = {"REQUIRE_REDIS": "1"} if variant.get("use_redis") else {}
    proc = run(cmd, cwd=project, env=tool_env(**extra), timeout=300)
    return proc.returncode, proc.stdout


KILLING_TESTS: dict[tuple[tuple[str, object], ...], list[str]] = {}
for _mutant in MUTANTS.values():
    KILLING_TESTS.setdefault(_mutant.variant, []).append(_mutant.test)


@pytest.mark.parametrize(
    "variant", KILLING_TESTS, ids=lambda v: "-".join(f"{k}={a}" for k, a in v) or "default"
)
def test_the_killing_tests_pass_without_mutants(render_once, tmp_path, variant):
    answers = dict(variant)
    project = copy_render(render_once(**answers), tmp_path / "pristine")
    code, output = run_tests(project, answers, *sorted(set(KILLING_TESTS[variant])))
    assert code == 0, output


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_rendered_suite_kills_the_mutant(render_once, tmp_path, mutant):
    path, original, mutated, test, variant = MUTANTS[mutant]
    answers = dict(variant)
    project = copy_render(render_once(**answers), tmp_path / "mutant")
    source = project / path
    text = source.read_text(encoding="utf-8")
    assert text.count(original) == 1, f"{path} no longer holds the line this mutant changes"
    source.write_text(text.replace(original, mutated), encoding="utf-8")
    code, output = run_tests(project, answers, test)
    # 1 is pytest's "some tests failed"; 2-5 (errors, usage, no tests) would prove nothing.
    assert code == 1, f"the mutant {mutant} survived {test}:\n{output}"
