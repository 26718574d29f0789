"""Every command that the rendered README.md and docs/*.md show is run, or is marked as not run.

A command is a line of a fenced shell block, read from the rendered document (see
rendered_docs.py). COMMANDS says what becomes of each: run for real in a copy of the rendered
project, in the order the documents show it (README.md first: its quick start migrates and
creates the superuser that the later commands find), or run by another template test, whose
source must still hold what it runs. A block whose first line starts with NOT_RUN tells the
reader that it is not run here, and why (Docker, a registry, a cluster). Any other command fails
the check. Commands in inline code are prose, out of this check's scope.
"""

import ast
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import BIN, FUNCTIONAL_VARIANTS, tool_env, variant_id
from rendered_docs import (
    NOT_RUN,
    Command,
    by_problem,
    document_commands,
    every_combination,
    is_document,
)
from servers import free_port, tail, throwaway_database

TESTS_DIR = Path(__file__).resolve().parent
SUPERUSER_PASSWORD = "docs-quick-start-1"
START_TIMEOUT = 60  # seconds for a started command to answer (a slow machine, not a measure)


@dataclass(frozen=True)
class RunIt:
    """Run it in the project; it must succeed and print `expect`."""

    expect: str


@dataclass(frozen=True)
class CreateSuperuser:
    """Run it with the password on standard input (what its prompt reads without a terminal)."""


@dataclass(frozen=True)
class Serve:
    """Start it on a free port (PORT); /health must answer, and the superuser log in."""


@dataclass(frozen=True)
class StartWorker:
    """Start it; it must keep running and touch its heartbeat file."""


@dataclass(frozen=True)
class RunElsewhere:
    """Run by other tests (too slow to run twice): `make <target>` runs `recipe` (no target: the
    command as it is), and each (module, test, text) names a test whose source holds `text`.
    """

    target: str | None
    recipe: str
    tests: tuple[tuple[str, str, str], ...]


Way = RunIt | CreateSuperuser | Serve | StartWorker | RunElsewhere

RENDERED_PYTEST = ("test_rendered_projects.py", "test_rendered_pytest", '"-m", "pytest"')
MAKE_MIGRATION = ("test_rendered_makefile.py", "test_make_uses_the_venv_and_shows_the_migrations")
# A command's words (its comment dropped) -> what becomes of it; the first full match wins.
COMMANDS: list[tuple[re.Pattern[str], Way]] = [
    (
        re.compile(r"make venv"),
        RunElsewhere(
            "venv",
            "$(VENV)/bin/python -m pip install -e '.[dev]'",
            (("test_install.py", "test_default_project_dev_extra_resolves_with_pip", '".[dev]"'),),
        ),
    ),
    (re.compile(r"make migrate"), RunIt(expect="-m alembic upgrade head")),
    (
        re.compile(r"make migration name=.+"),
        RunElsewhere(
            "migration",
            '$(PYTHON) -m alembic revision --autogenerate -m "$(name)"',
            ((*MAKE_MIGRATION, '"migration", "name='),),
        ),
    ),
    (
        re.compile(r"alembic check"),
        RunElsewhere(
            None,
            "alembic check",
            (("test_rendered_projects.py", "test_rendered_migrations", '["check"]'),),
        ),
    ),
    (re.compile(r"make superuser email=\S+ username=\S+"), CreateSuperuser()),
    (re.compile(r"make run"), Serve()),
    (re.compile(r"make worker"), StartWorker()),
    (re.compile(r"make purge"), RunIt(expect="Purged ")),
    (re.compile(r"make test"), RunElsewhere("test", "$(PYTHON) -m pytest", (RENDERED_PYTEST,))),
    (
        re.compile(r"TEST_DATABASE_URL=\S+ make test"),
        RunElsewhere(
            "test",
            "$(PYTHON) -m pytest",
            (
                RENDERED_PYTEST,
                (
                    "test_postgres_required.py",
                    "test_a_missing_server_stops_the_run_with_one_line",
                    "TEST_DATABASE_URL=",
                ),
            ),
        ),
    ),
]


def way_of(command: Command) -> Way | None:
    return next((way for pattern, way in COMMANDS if pattern.fullmatch(command.words)), None)


# --- Every combination: each command is run, run elsewhere or marked ------------------------------


def test_every_command_is_run_or_marked_in_every_combination():
    problems: list[tuple[str, str]] = []
    for rendered in every_combination():
        assert "README.md" in rendered.documents, rendered.name
        assert len(rendered.documents) > 1, f"{rendered.name}: no docs/ beside the README"
        for block, command in document_commands(rendered.documents):
            if not block.language:
                problems.append(
                    (
                        rendered.name,
                        f"{block.document}:{block.line}: a fenced block without a language; "
                        "name it (`bash` for commands, which this test then checks, `text` for "
                        "the rest)",
                    )
                )
            if command is not None and way_of(command) is None:
                problems.append(
                    (
                        rendered.name,
                        f"{command.where}: `{command.words}` is neither run nor marked. Run "
                        "it from COMMANDS in tests/test_docs_commands.py (or map it to the test "
                        f"that runs it), or start its block with `{NOT_RUN}<what it needs>.`",
                    )
                )
    assert not problems, by_problem(iter(problems))


def make_recipe(makefile: str, target: str) -> list[str]:
    lines = makefile.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(f"{target}:")]
    recipe = itertools.takewhile(lambda line: line.startswith("\t"), lines[start + 1 :])
    return [line.strip() for line in recipe]


def source_of(module: str, name: str) -> str:
    source = (TESTS_DIR / module).read_text(encoding="utf-8")
    functions = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    assert functions, f"tests/{module} has no {name}"
    return ast.get_source_segment(source, functions[0]) or ""


def test_commands_run_elsewhere_are_run_there():
    """The link to the other test cannot rot: the target still runs the recipe, and the test
    still runs what the recipe runs.
    """
    problems: list[tuple[str, str]] = []
    mapped = 0
    for rendered in every_combination():
        for _, command in document_commands(rendered.documents):
            way = way_of(command) if command else None
            if not isinstance(way, RunElsewhere):
                continue
            mapped += 1
            where = f"{command.where}: `{command.words}`"
            if way.target and way.recipe not in make_recipe(rendered.makefile, way.target):
                problem = f"{where}: `make {way.target}` no longer runs {way.recipe}"
                problems.append((rendered.name, problem))
            for module, test, text in way.tests:
                if text not in source_of(module, test):
                    problems.append((rendered.name, f"{where}: {module}::{test} lacks {text}"))
    assert mapped, "no command is run elsewhere: drop this test, or the RunElsewhere entries"
    assert not problems, by_problem(iter(problems))


def test_only_marked_blocks_escape_the_runner():
    text = (
        "```bash\n# Not run by the template's tests: needs a cluster.\nkubectl apply -k x\n```\n"
        "```console\n$ make purge  # a comment\nPurged 0\n$ make \\\n  migrate\n```\n"
        "```bash\n# just a comment\nkubectl apply -k x\n```\n"
        "```\nmake run\n```\n"
    )
    found = list(document_commands({"README.md": text}))
    assert [(c.line, c.words, way_of(c)) if c else (b.line, b.language) for b, c in found] == [
        (1, "bash"),
        (6, "make purge", RunIt(expect="Purged ")),
        (8, "make migrate", RunIt(expect="-m alembic upgrade head")),
        (13, "kubectl apply -k x", None),
        (15, ""),
    ]


# --- Each functional variant: run them ------------------------------------------------------------


@contextmanager
def started(command: Command, root: Path, env: dict[str, str], log: Path) -> Iterator[Path]:
    """A long-running command in a process group of its own, which must still run when the
    `with` body ends; then the group is stopped.
    """
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command.text],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
        assert proc.poll() is None, f"{command.where}: `{command.text}` exited\n{tail(log)}"
    finally:
        # Ctrl-C, as the reader stops it. (SIGTERM to the group reaches taskiq's supervisor
        # twice, from the signal and from make, which can hang it: taskiq issue 593.)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
        proc.wait()


class DocumentedRun:
    """The documents' commands, in their order, in a copy of a rendered variant."""

    def __init__(self, root: Path, env: dict[str, str], work: Path) -> None:
        self.root, self.env, self.work = root, env, work
        self.superuser: str | None = None
        self.ran: list[str] = []

    def run(self, command: Command, way: Way) -> None:
        if command.words in self.ran:
            return
        self.ran.append(command.words)
        log = self.work / f"{Path(command.document).stem}-{command.line}.log"
        if isinstance(way, RunIt):
            output = self.finish(command)
            assert way.expect in output, f"{command.where}: `{command.text}` printed:\n{output}"
        elif isinstance(way, CreateSuperuser):
            self.finish(command, stdin=f"{SUPERUSER_PASSWORD}\n")
            self.superuser = command.words.partition("username=")[2].split()[0]
        elif isinstance(way, Serve):
            with started(command, self.root, self.env, log):
                self.serves(command, log)
        elif isinstance(way, StartWorker):
            with started(command, self.root, self.env, log):
                self.works(command, log)

    def finish(self, command: Command, stdin: str = "") -> str:
        # A session of its own has no terminal: a password prompt reads standard input.
        proc = subprocess.run(
            ["bash", "-c", command.text],
            cwd=self.root,
            env=self.env,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            start_new_session=True,
            check=False,
        )
        failed = f"{command.where}: `{command.text}` exited {proc.returncode}:\n{proc.stdout}"
        assert proc.returncode == 0, failed
        return proc.stdout

    def serves(self, command: Command, log: Path) -> None:
        """/health answers 200; the superuser made before (if any) logs in."""
        base_url = f"http://127.0.0.1:{self.env['PORT']}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                health = httpx.get(f"{base_url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{command.where}: no answer\n{tail(log)}"
                time.sleep(0.2)
        assert health.status_code == 200, f"{command.where}: {health.text}\n{tail(log)}"
        if self.superuser:
            form = {"username": self.superuser, "password": SUPERUSER_PASSWORD}
            login = httpx.post(f"{base_url}/api/v1/auth/login", data=form, timeout=30)
            assert login.status_code == 200, f"{command.where}: {login.text}\n{tail(log)}"

    def works(self, command: Command, log: Path) -> None:
        """The worker touches its heartbeat file (while its event loop runs)."""
        heartbeat = Path(self.env["WORKER_HEARTBEAT_FILE"])
        deadline = time.monotonic() + START_TIMEOUT
        while not heartbeat.exists():
            assert time.monotonic() < deadline, f"{command.where}: no heartbeat\n{tail(log)}"
            time.sleep(0.2)


@pytest.fixture
def project(render_once, variant, tmp_path) -> Path:
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns(".pytest_cache", "*.db*", ".venv", ".*_cache", ".coverage*")
    shutil.copytree(render_once(**variant), root, ignore=ignore)
    # The suite's virtualenv stands in for the one `make venv` makes.
    (root / ".venv").symlink_to(BIN.parent)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("variant", FUNCTIONAL_VARIANTS, ids=variant_id)
def test_documented_commands_run(project, variant, tmp_path):
    documents = {
        rel: path.read_text(encoding="utf-8")
        for path in project.rglob("*.md")
        if is_document(rel := path.relative_to(project).as_posix())
    }
    with throwaway_database(str(variant["database"]), tmp_path, "tpl_docs") as database_url:
        env = tool_env(
            DATABASE_URL=database_url,
            PORT=str(free_port()),
            BCRYPT_ROUNDS="4",  # allowed in `local` (.env); the superuser logs in at once
            REDIS_KEY_PREFIX=f"docs-{secrets.token_hex(6)}",
            WORKER_HEARTBEAT_FILE=str(tmp_path / "worker-heartbeat"),
            # Never called: neither liveness nor the login reaches B2.
            B2_APPLICATION_KEY_ID="docs-key-id",
            B2_APPLICATION_KEY="docs-key",
            B2_BUCKET_NAME="docs-bucket",
        )
        run = DocumentedRun(project, env, tmp_path)
        for _, command in document_commands(documents):
            if command is None:
                continue
            way = way_of(command)
            assert way is not None, f"{command.where}: `{command.words}` is not checked"
            if not isinstance(way, RunElsewhere):
                run.run(command, way)
    # The quick start itself ran: migrated, made the superuser, served (and logged it in).
    assert {"make migrate", "make run"} <= set(run.ran), run.ran
    assert run.superuser, run.ran
