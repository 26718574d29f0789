"""The pre- and post-generation hooks: validation, removal of disabled files, .env."""

import ast
import stat
from pathlib import Path

import pytest
from helpers import (
    BIN,
    CHOICES,
    HOOKS_DIR,
    OPTIONAL_FILES,
    TEMPLATE_DIR,
    check,
    default_answers,
    run,
    run_hook,
)

# (field, bad value, a fragment of the rule the message must state)
BAD_ANSWERS = [
    ("project_slug", "1abc", "must start with a lowercase letter"),
    ("project_slug", "My-Service", "must start with a lowercase letter"),
    ("project_slug", "my service", "only lowercase letters, digits"),
    ("project_slug", "my-service-", "end with a letter or digit"),
    ("project_slug", "s" * 64, "at most 63 characters"),
    ("project_slug", "class", "Python keyword"),
    ("project_slug", "match", "Python keyword"),
    ("project_slug", "app", "must not shadow the app package"),
    ("project_slug", "fastapi", "one of its dependencies"),
    ("project_slug", "sqlalchemy", "one of its dependencies"),
    ("project_slug", "alembic", "one of its dependencies"),
    ("project_slug", "pydantic", "one of its dependencies"),
    ("project_slug", "pydantic-settings", "one of its dependencies"),
    ("project_slug", "tests", "one of its dependencies"),
    ("project_slug", "test", "one of its dependencies"),
    ("project_slug", "json", "standard library"),
    ("project_name", "", "must not be empty"),
    ("project_name", 'My "Quoted" Service', "without double quotes"),
    ("description", "back\\slash", "without double quotes, backslashes"),
    ("author_name", " ", "must not be empty"),
    ("author_email", "not-an-email", "name@example.com"),
    ("author_email", "a@b", "name@example.com"),
    ("author_email", "a b@example.com", "name@example.com"),
    ("version", "1.0", "PEP 440 release like 0.1.0"),
    ("version", "v1.0.0", "PEP 440 release like 0.1.0"),
    ("version", "01.0.0", "PEP 440 release like 0.1.0"),
]


def assert_one_error_line(output: str, field: str, value: object, rule: str) -> None:
    # cookiecutter adds its own "Stopping generation" line and traceback; the hook says one line.
    lines = [line for line in output.splitlines() if " is invalid: " in line]
    assert len(lines) == 1, f"expected one hook ERROR line, got:\n{output}"
    assert lines[0].startswith(f"ERROR: {field} {value!r} is invalid: "), lines[0]
    assert rule in lines[0], lines[0]


def cookiecutter_cli(out: Path, config: object, *answers: str) -> tuple[int, str]:
    out.mkdir(exist_ok=True)
    cmd = [str(BIN / "cookiecutter"), "--no-input", "--config-file", str(config)]
    proc = run([*cmd, "--output-dir", str(out), str(TEMPLATE_DIR), *answers], cwd=out.parent)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize(
    ("field", "value", "rule"), BAD_ANSWERS, ids=[f"{f}={v[:20]!r}" for f, v, _ in BAD_ANSWERS]
)
def test_bad_answer_fails_with_one_line_and_leaves_nothing(tmp_path, cc_config, field, value, rule):
    answers = [f"{field}={value}"]
    if field == "project_name":
        answers.append("project_slug=ok-name")
    out = tmp_path / "out"
    code, output = cookiecutter_cli(out, cc_config, *answers)
    assert code != 0, output
    assert_one_error_line(output, field, value, rule)
    assert list(out.iterdir()) == [], "a failed render must leave nothing behind"


@pytest.mark.parametrize("answer", ["license=WTFPL", "database=mysql", "use_b2_storage=maybe"])
def test_answer_outside_the_choices_is_refused_and_leaves_nothing(tmp_path, cc_config, answer):
    out = tmp_path / "out"
    code, output = cookiecutter_cli(out, cc_config, answer)
    assert code != 0, output
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("license", "WTFPL", "must be one of MIT, Apache-2.0"),
        ("python_version", "3.10", "must be one of 3.11, 3.12, 3.13"),
        ("database", "mysql", "must be one of sqlite, postgresql"),
        ("use_b2_storage", "False", "must be a boolean"),
    ],
)
def test_pre_gen_checks_choices_itself(tmp_path, field, value, rule):
    # cookiecutter refuses these before the hook; the hook still checks them (cruft, replays).
    answers = default_answers()
    answers[field] = value
    proc = run_hook("pre_gen_project", answers, tmp_path)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, field, value, rule)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"project_slug": "a"},
        {"project_slug": "my_service2"},
        {"project_name": "Bob's Café Service", "project_slug": "bobs-cafe"},
        {"description": ""},
        {"version": "1.2.3rc1"},
        {"version": "2.0.0.post1.dev3"},
        {"author_email": "first.last+tag@sub.example.co.uk"},
        {"use_b2_storage": True, "database": "postgresql"},
    ],
    ids=repr,
)
def test_pre_gen_accepts_good_answers(tmp_path, overrides):
    proc = run_hook("pre_gen_project", default_answers(**overrides), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_hook_choices_match_cookiecutter_json():
    tree = ast.parse((HOOKS_DIR / "pre_gen_project.py").read_text(encoding="utf-8"))
    assigned = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    hook_choices = ast.literal_eval(assigned["CHOICES"])
    assert {key: list(value) for key, value in hook_choices.items()} == CHOICES


def test_cli_booleans_switch_b2_files(tmp_path, cc_config):
    b2_files = OPTIONAL_FILES["use_b2_storage"]
    for word, present in [("yes", True), ("no", False), ("true", True), ("0", False)]:
        out = tmp_path / word
        code, output = cookiecutter_cli(out, cc_config, f"use_b2_storage={word}")
        assert code == 0, output
        (project,) = out.iterdir()
        assert [(project / f).is_file() for f in b2_files] == [present] * len(b2_files), word


def make_project(root: Path, example: str = "A=1\nSECRET_KEY=change-me\nB=2\n") -> Path:
    for name in (n for names in OPTIONAL_FILES.values() for n in names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x = 1\n", encoding="utf-8")
    (root / "app" / "keep.py").write_text("x = 1\n", encoding="utf-8")
    (root / ".env.example").write_text(example, encoding="utf-8")
    (root / "licenses").mkdir()
    for license_ in CHOICES["license"]:
        (root / "licenses" / license_).write_text(f"{license_} text\n", encoding="utf-8")
    return root


def test_post_gen_removes_disabled_files_and_empty_dirs_and_writes_env(tmp_path):
    root = make_project(tmp_path / "proj")
    proc = run_hook("post_gen_project", default_answers(use_b2_storage=False), root)
    assert proc.returncode == 0, proc.stderr
    for name in OPTIONAL_FILES["use_b2_storage"]:
        assert not (root / name).exists(), name
    leftover_dirs = [p for p in root.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert leftover_dirs == []
    assert (root / "app" / "keep.py").is_file()
    env = (root / ".env").read_text(encoding="utf-8").splitlines()
    assert env[0] == "A=1"
    assert env[2] == "B=2"
    secret = env[1].removeprefix("SECRET_KEY=")
    assert len(secret) >= 64
    assert secret != "change-me"
    assert stat.S_IMODE((root / ".env").stat().st_mode) == 0o600
    assert "Next steps" in proc.stdout
    assert "cd my-service" in proc.stdout


@pytest.mark.parametrize("license_", CHOICES["license"])
def test_post_gen_keeps_the_chosen_license_only(tmp_path, license_):
    root = make_project(tmp_path / "proj")
    proc = run_hook("post_gen_project", default_answers(license=license_), root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "LICENSE").read_text(encoding="utf-8") == f"{license_} text\n"
    assert not (root / "licenses").exists()


def test_post_gen_keeps_enabled_files(tmp_path):
    root = make_project(tmp_path / "proj")
    proc = run_hook("post_gen_project", default_answers(use_b2_storage=True), root)
    assert proc.returncode == 0, proc.stderr
    for name in OPTIONAL_FILES["use_b2_storage"]:
        assert (root / name).is_file(), name


@pytest.mark.parametrize("b2", [False, True], ids=["no_b2", "b2"])
def test_post_gen_fails_loudly_on_a_listed_file_that_is_missing(tmp_path, b2):
    root = make_project(tmp_path / "proj")
    missing = OPTIONAL_FILES["use_b2_storage"][-1]
    (root / missing).unlink()
    proc = run_hook("post_gen_project", default_answers(use_b2_storage=b2), root)
    assert proc.returncode == 1
    assert missing in proc.stderr
    assert proc.stderr.startswith("ERROR:")


def test_post_gen_fails_without_a_secret_key_line(tmp_path):
    root = make_project(tmp_path / "proj", example="A=1\n")
    proc = run_hook("post_gen_project", default_answers(), root)
    assert proc.returncode == 1
    assert "SECRET_KEY=" in proc.stderr


def test_post_gen_leaves_an_existing_env_alone(tmp_path):
    root = make_project(tmp_path / "proj")
    (root / ".env").write_text("SECRET_KEY=mine\n", encoding="utf-8")
    proc = run_hook("post_gen_project", default_answers(), root)
    assert proc.returncode == 0, proc.stderr
    assert (root / ".env").read_text(encoding="utf-8") == "SECRET_KEY=mine\n"


def test_template_code_is_lint_clean():
    check([str(BIN / "ruff"), "check", "--no-cache", "hooks", "tests"], cwd=TEMPLATE_DIR)
    check(
        [str(BIN / "ruff"), "format", "--check", "--no-cache", "hooks", "tests"], cwd=TEMPLATE_DIR
    )
