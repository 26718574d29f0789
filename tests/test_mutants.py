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

POSTGRESQL_REDIS = (("database", "postgresql"), ("use_b2_storage", False), ("use_redis", True))

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
    "address-key-includes-the-source-port": Mutant(
        "app/core/rate_limit.py",
        'return str(client[0]) if client else "unknown"',
        'return f"{client[0]}:{client[1]}" if client else "unknown"',
        "tests/test_rate_limits.py::test_failed_logins_are_limited_per_address",
    ),
    "login-guard-lets-blocked-addresses-through": Mutant(
        "app/middleware/login_guard.py",
        ' or limiter.known_blocked("login_address", client_address(scope))',
        "",
        "tests/test_rate_limits.py::test_an_address_known_to_be_blocked_is_refused_before_routing",
    ),
    "log-cap-holds-lines-instead-of-writing": Mutant(
        "app/core/logger.py",
        "if urgent or len(self._pending) >= MAX_PENDING_LINES:",
        "if urgent:",
        "tests/test_app.py::test_a_pass_of_the_event_loop_that_logs_10000_lines_holds_few_of_them",
    ),
    "limits-stay-local-after-redis-recovers": Mutant(
        "app/core/rate_limit.py",
        '            logger.info("Redis reachable again: rate limits are shared again")\n'
        "            self._shared_down_since = None\n",
        '            logger.info("Redis reachable again: rate limits are shared again")\n',
        "tests/test_rate_limits.py::test_after_a_redis_outage_the_limits_are_shared_again",
        (("database", "postgresql"), ("use_redis", True)),
    ),
    "every-request-probes-a-down-redis": Mutant(
        "app/core/rate_limit.py",
        "meanwhile on memory: one probe, and nobody waits for it.\n"
        "            self._shared_down_since = time.monotonic()\n",
        "meanwhile on memory: one probe, and nobody waits for it.\n",
        "tests/test_rate_limits.py::"
        "test_while_redis_hangs_one_request_tries_it_and_the_others_do_not_wait",
        (("database", "postgresql"), ("use_redis", True)),
    ),
    "reset-request-supersedes-other-users-links": Mutant(
        "app/repos/password_reset_token.py",
        "                    PasswordResetToken.user_id == user_id,\n",
        "",
        "tests/test_password_reset.py::test_a_request_of_one_user_leaves_another_users_link_valid",
    ),
    "reset-claim-superseded-by-other-users": Mutant(
        "app/repos/password_reset_token.py",
        "exists().where(_later.user_id == token.user_id, _later.requested_at",
        "exists().where(_later.requested_at",
        "tests/test_password_reset.py::test_a_request_of_one_user_leaves_another_users_link_valid",
    ),
    "uploads-held-to-the-body-limit": Mutant(
        "app/middleware/body_limit.py",
        'limit = self.route_limits.get((scope["method"], scope["path"]), self.default_limit)',
        "limit = self.default_limit",
        "tests/test_files.py::test_an_upload_larger_than_the_body_limit_is_accepted",
        (("use_b2_storage", True),),
    ),
    "announced-body-of-the-limit-refused": Mutant(
        "app/middleware/body_limit.py",
        "if declared is not None and declared > limit:",
        "if declared is not None and declared >= limit:",
        "tests/test_security.py::test_a_body_of_exactly_the_limit_is_served",
    ),
    "streamed-body-of-the-limit-refused": Mutant(
        "app/middleware/body_limit.py",
        "if received > limit:",
        "if received >= limit:",
        "tests/test_security.py::test_a_body_of_exactly_the_limit_is_served",
    ),
    "schema-revision-read-by-every-failing-request": Mutant(
        "app/core/migrations.py",
        "            if self.state.status in {SchemaStatus.CURRENT, SchemaStatus.UNKNOWN}:\n",
        "            if True:\n",
        "tests/test_schema_check.py::test_a_database_never_migrated_is_not_an_outage",
    ),
    "readiness-probes-log-alembic-chatter": Mutant(
        "app/core/migrations.py",
        '        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)\n',
        "",
        "tests/test_schema_check.py::test_reading_the_revision_logs_nothing",
    ),
    "postgresql-undefined-column-is-a-500": Mutant(
        "app/core/migrations.py",
        'MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})',
        'MISSING_SCHEMA_SQLSTATES = frozenset({"42P01"})',
        "tests/test_schema_check.py::test_a_database_behind_the_code_answers_503_until_migrated"
        "[column]",
        (("database", "postgresql"),),
    ),
    "read-turns-without-the-overflow": Mutant(
        "app/core/db.py",
        "read_slots = settings.db_pool_size + settings.db_max_overflow",
        "read_slots = settings.db_pool_size",
        "tests/test_database.py::test_reads_take_turns_for_the_overflow_connections_too",
        POSTGRESQL_REDIS,
    ),
    "read-waits-for-a-turn-then-the-whole-pool-timeout": Mutant(
        "app/core/db.py",
        "timeout_at(deadline):\n                        connection",
        "timeout_at(None):\n                        connection",
        "tests/test_database.py::"
        "test_a_read_waits_for_its_turn_and_its_connection_one_pool_timeout_in_all",
        POSTGRESQL_REDIS,
    ),
    "pgbouncer-without-a-statement-timeout": Mutant(
        "app/core/db.py",
        "        _time_out_each_transaction(engine, settings.db_statement_timeout_ms)\n",
        "        pass\n",
        "tests/test_database.py::test_behind_pgbouncer_only_transactions_pay_for_the_timeout",
        POSTGRESQL_REDIS,
    ),
    "pgbouncer-timeout-set-for-lone-reads-too": Mutant(
        "app/core/db.py",
        'if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":',
        "if True:",
        "tests/test_database.py::test_behind_pgbouncer_only_transactions_pay_for_the_timeout",
        POSTGRESQL_REDIS,
    ),
    "connect-timeout-is-the-pool-timeout": Mutant(
        "app/core/db.py",
        '"timeout": settings.db_connect_timeout,',
        '"timeout": settings.db_pool_timeout,',
        "tests/test_database.py::test_a_server_that_never_answers_is_503_within_the_connect_timeout",
        POSTGRESQL_REDIS,
    ),
    "connect-timeout-is-a-500": Mutant(
        "app/core/db.py",
        "            raise ConnectionError(msg) from exc\n",
        "            raise\n",
        "tests/test_database.py::test_a_server_that_never_answers_is_503_within_the_connect_timeout",
        POSTGRESQL_REDIS,
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
