"""The rendered project installs (uv sync, pip extras) and renders through cruft."""

import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers import BIN, PYTHON, TEMPLATE_DIR, check, check_files, default_answers, run, tool_env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

# What a copy of the template for cruft leaves out: local state, not template content.
NOT_TEMPLATE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)


def required_names(root: Path) -> set[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return {canonicalize_name(Requirement(req).name) for req in reqs}


def test_default_project_installs_with_uv_sync(cookies, tmp_path):
    result = cookies.bake()
    assert result.exit_code == 0, repr(result.exception)
    root = result.project_path
    venv = tmp_path / "uv-venv"
    env = tool_env(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    sync = [str(BIN / "uv"), "sync", "--python", sys.executable]
    # Offline when the uv cache already holds everything; otherwise fill the cache.
    if run([*sync, "--offline"], cwd=root, env=env).returncode != 0:
        check(sync, cwd=root, env=env)
    assert (root / "uv.lock").is_file()
    # The project (editable) and its dev group are in the environment, importable from anywhere.
    names = sorted(required_names(root))
    probe = (
        "import importlib.metadata as m, app; "
        f"print(m.version('my-service')); [m.version(n) for n in {names!r}]"
    )
    out = check([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env)
    assert out.strip() == default_answers()["version"]


def test_default_project_dev_extra_resolves_with_pip(cookies, tmp_path):
    result = cookies.bake()
    assert result.exit_code == 0, repr(result.exception)
    root = result.project_path
    report = tmp_path / "pip-report.json"
    # A full resolution (as into an empty venv) of `pip install -e '.[dev]'`, without installing.
    cmd = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--dry-run"]
    cmd += ["--ignore-installed", "--report", str(report), "-e", ".[dev]"]
    check(cmd, cwd=root, timeout=600)
    install = json.loads(report.read_text(encoding="utf-8"))["install"]
    resolved = {canonicalize_name(item["metadata"]["name"]): item for item in install}
    own = resolved.get("my-service")
    assert own is not None, sorted(resolved)
    assert own["requested_extras"] == ["dev"]
    assert "dev" in own["metadata"].get("provides_extra", [])
    missing = required_names(root) - resolved.keys()
    assert not missing, f"not resolved: {sorted(missing)}"


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """A committed git copy of the template's working tree (cruft clones its template)."""
    repo = tmp_path_factory.mktemp("template-repo") / "template"
    shutil.copytree(TEMPLATE_DIR, repo, ignore=NOT_TEMPLATE)
    git = ["git", "-c", "user.name=template-tests", "-c", "user.email=tests@example.com"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "template"]):
        subprocess.run([*git, *cmd], cwd=repo, check=True, capture_output=True)
    return repo


@pytest.mark.parametrize(
    "overrides",
    [{}, {"database": "postgresql", "use_b2_storage": True}],
    ids=["default", "postgresql-b2"],
)
def test_cruft_create(template_repo, tmp_path, overrides):
    out = tmp_path / "out"
    cmd = [str(BIN / "cruft"), "create", str(template_repo), "--no-input"]
    cmd += ["--output-dir", str(out), "--extra-context", json.dumps(overrides)]
    check(cmd, cwd=tmp_path)
    root = out / "my-service"
    state = json.loads((root / ".cruft.json").read_text(encoding="utf-8"))
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=template_repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert state["commit"] == head
    assert Path(state["template"]).resolve() == template_repo.resolve()
    answers = default_answers(**overrides)
    rendered_answers = state["context"]["cookiecutter"]
    assert {key: rendered_answers[key] for key in answers} == answers
    problems = check_files(root, answers)
    assert not problems, "\n".join(problems)
    check([str(BIN / "cruft"), "check", "--project-dir", str(root)], cwd=tmp_path)


def test_cruft_update_applies_a_template_change_quietly(template_repo, tmp_path):
    """cruft update renders the old and the new template only to diff them: the next steps are
    not printed for those copies (they were printed twice), and the project's .env stays.
    """
    template = tmp_path / "template"
    git = ["git", "-c", "user.name=template-tests", "-c", "user.email=tests@example.com"]
    check([*git, "clone", "-q", str(template_repo), str(template)], cwd=tmp_path)
    out = tmp_path / "out"
    create = [str(BIN / "cruft"), "create", str(template), "--no-input", "--output-dir", str(out)]
    assert check(create, cwd=tmp_path).count("Next steps") == 1
    root = out / "my-service"
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "created"]):
        check([*git, *cmd], cwd=root)
    env_before = (root / ".env").read_text(encoding="utf-8")
    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nA template change.\n", "utf-8")
    check([*git, "commit", "-q", "-am", "a template change"], cwd=template)

    update = [str(BIN / "cruft"), "update", "--skip-apply-ask", "-y", "--project-dir", str(root)]
    output = check(update, cwd=tmp_path)
    assert "Next steps" not in output
    assert "A template change." in (root / "README.md").read_text(encoding="utf-8")
    assert (root / ".env").read_text(encoding="utf-8") == env_before
    assert not list(root.rglob("*.rej"))


def test_the_builds_carry_the_email_templates_and_the_docs(cookies, tmp_path):
    """The mail templates are package data: the wheel (built from the sdist) has every file of
    app/templates/. The sdist has the README and the docs/ it links to.
    """
    result = cookies.bake()
    assert result.exit_code == 0, repr(result.exception)
    root = result.project_path
    build = [str(BIN / "uv"), "build", "--python", sys.executable]
    build += ["--out-dir", str(tmp_path / "dist")]
    env = tool_env(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    if run([*build, "--offline"], cwd=root, env=env).returncode != 0:
        check(build, cwd=root, env=env)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    templates = {
        path.relative_to(root).as_posix() for path in (root / "app" / "templates").rglob("*.*")
    }
    assert templates, "no template in the rendered project"
    with zipfile.ZipFile(wheel) as archive:
        assert templates <= set(archive.namelist())
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    docs = {path.relative_to(root).as_posix() for path in (root / "docs").glob("*.md")}
    assert docs, "no docs/ in the rendered project"
    with tarfile.open(sdist) as archive:
        # Each member is under the sdist's own top directory.
        carried = {name.partition("/")[2] for name in archive.getnames()}
    assert {"README.md", *docs} <= carried, sorted(carried)
