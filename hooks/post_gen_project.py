"""Finish a freshly rendered project.

Runs with the new project directory as the working directory, both under `cookiecutter` and
under `cruft create` / `cruft update`, so it relies on nothing but the working directory and the
answers. `cruft update` renders the old and the new template version into fresh temporary
directories only to diff them; those scratch copies get steps 1-3 (their files must match a real
render) but no .env and no next steps, which would only be printed twice for nothing.

1. Remove the files whose condition does not hold (OPTIONAL_FILES is the one list of them). A
   listed file that was not rendered is an error (whatever the answers), so the list cannot
   silently drift from the template tree.
2. Remove the directories that this left empty.
3. Keep the chosen license as LICENSE (licenses/ holds one rendered text per choice).
4. Write `.env` from `.env.example` with a fresh random SECRET_KEY.
5. Print the next steps.
"""

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# condition -> files that exist only when it holds. A condition is a yes/no answer
# ("use_b2_storage": the answer is yes), a choice ("database=postgresql"), or several of those
# joined by " and ".
OPTIONAL_FILES: dict[str, tuple[str, ...]] = {
    # Kubernetes manifests: replicas need a database they can share, which SQLite is not.
    "database=postgresql": (
        "deploy/kubernetes/kustomization.yaml",
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/secret.example.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/migration-job.yaml",
        "deploy/kubernetes/hpa.yaml",
        "deploy/kubernetes/pdb.yaml",
        "deploy/kubernetes/purge-cronjob.yaml",
        "docs/kubernetes.md",
    ),
    "use_b2_storage": (
        "app/services/back_blaze_b2.py",
        "app/services/files.py",
        "app/schemas/back_blaze_bucket.py",
        "app/schemas/file.py",
        "app/models/file.py",
        "app/repos/file.py",
        "app/api/v1/endpoints/files.py",
        "app/api/v1/deps/storage.py",
        "app/alembic/versions/0002_files.py",
        "tests/test_b2_service.py",
        "tests/test_files.py",
    ),
    "use_redis": (
        "app/core/redis.py",
        "app/jobs/stream_broker.py",
        "app/jobs/consumer_lease.py",
        "app/jobs/dead_letters.py",
        "app/worker.py",
        "tests/test_worker.py",
    ),
    # The job workers' Deployment: durable jobs need Redis.
    "database=postgresql and use_redis": ("deploy/kubernetes/worker-deployment.yaml",),
}

# tempfile.TemporaryDirectory()'s names: "tmp" and eight random characters.
TEMPORARY_DIRECTORY_NAME = re.compile(r"tmp[a-z0-9_]{8}")
SECRET_KEY_PREFIX = "SECRET_KEY="  # noqa: S105 (the key name, not a secret)


class HookError(Exception):
    pass


def holds(condition: str, answers: dict[str, object]) -> bool:
    return all(_holds_one(part, answers) for part in condition.split(" and "))


def _holds_one(condition: str, answers: dict[str, object]) -> bool:
    option, _, value = condition.partition("=")
    return answers[option] == value if value else bool(answers[option])


def remove_disabled_files(root: Path) -> list[Path]:
    """Delete the files of every option that is off; return the deleted paths."""
    missing = [
        name for files in OPTIONAL_FILES.values() for name in files if not (root / name).is_file()
    ]
    if missing:
        msg = "OPTIONAL_FILES in post_gen_project.py lists files the template did not render: "
        raise HookError(msg + ", ".join(missing))
    removed: list[Path] = []
    for condition, files in OPTIONAL_FILES.items():
        if not holds(condition, ANSWERS):
            for name in files:
                (root / name).unlink()
                removed.append(root / name)
    return removed


def remove_empty_parents(root: Path, removed: list[Path]) -> None:
    """Delete the directories that the removals left empty, up to (not including) root."""
    for path in removed:
        parent = path.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def install_license(root: Path) -> None:
    """licenses/<choice> becomes LICENSE; the other texts go."""
    chosen = root / "licenses" / str(ANSWERS["license"])
    if not chosen.is_file():
        raise HookError(f"licenses/{ANSWERS['license']} is missing from the rendered project")
    chosen.replace(root / "LICENSE")
    shutil.rmtree(root / "licenses")


def write_env(root: Path) -> bool:
    """Write .env from .env.example with a new SECRET_KEY; False when .env already exists."""
    env = root / ".env"
    if env.exists():
        return False
    example = root / ".env.example"
    if not example.is_file():
        raise HookError(".env.example is missing from the rendered project")
    lines = example.read_text(encoding="utf-8").splitlines(keepends=True)
    keys = [i for i, line in enumerate(lines) if line.startswith(SECRET_KEY_PREFIX)]
    if len(keys) != 1:
        msg = f".env.example must have exactly one {SECRET_KEY_PREFIX} line, found {len(keys)}"
        raise HookError(msg)
    lines[keys[0]] = f"{SECRET_KEY_PREFIX}{secrets.token_urlsafe(64)}\n"
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return True


def next_steps(env_written: bool) -> str:
    slug = ANSWERS["project_slug"]
    steps = [
        f"cd {slug}",
        "make venv                       # or: uv sync",
    ]
    if ANSWERS["database"] == "postgresql":
        steps.append("docker compose up -d postgres   # or point DATABASE_URL in .env at a server")
    steps += [
        "make migrate",
        "make superuser email=you@example.com username=admin",
        "make run                        # then open http://127.0.0.1:8000/docs",
        "make test",
    ]
    env_note = (
        ".env written with a fresh SECRET_KEY (it is git-ignored; keep it out of commits)."
        if env_written
        else ".env already existed and was left as it was."
    )
    body = "\n".join(f"  {step}" for step in steps)
    return f"\nCreated {slug}. {env_note}\nNext steps:\n{body}\n"


def is_cruft_scratch_copy(root: Path) -> bool:
    """True for the copies `cruft update` renders to diff: cruft's answers carry `_commit`, and
    each copy is rendered alone into a new temporary directory right under the system's.
    """
    parent = root.parent
    return (
        "_commit" in ANSWERS
        and parent.parent == Path(tempfile.gettempdir()).resolve()
        and TEMPORARY_DIRECTORY_NAME.fullmatch(parent.name) is not None
    )


def main() -> int:
    root = Path.cwd()
    try:
        removed = remove_disabled_files(root)
        remove_empty_parents(root, removed)
        install_license(root)
        if is_cruft_scratch_copy(root):
            return 0
        env_written = write_env(root)
    except HookError as exc:
        print(f"ERROR: post_gen_project: {exc}", file=sys.stderr)
        return 1
    print(next_steps(env_written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
