"""Install the rendered project's dependencies into the template's virtualenv.

The pins live only in the template's `{{cookiecutter.project_slug}}/pyproject.toml`. This
renders that one file for the variants that together need every dependency (PostgreSQL + B2,
and SQLite for aiosqlite), reads `[project].dependencies` and the `dev` extra, and installs
their union together with requirements-dev.txt in one pip run (so a clash between the two is
reported rather than silently resolved one way).

It also holds the template's one way of rendering a text for given answers, which the tests
use too (this module needs nothing but cookiecutter, so it runs before the rest is installed).

Usage: python tests/install_rendered_deps.py [--print]
"""

import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
PYPROJECT = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "pyproject.toml"
VARIANTS = (
    {"database": "postgresql", "use_b2_storage": True, "use_redis": True},
    {"database": "sqlite", "use_b2_storage": False},
)


def full_answers(**overrides: object) -> dict[str, object]:
    """Every answer as cookiecutter --no-input gives it (private keys such as `_extensions`
    included), with overrides applied.
    """
    context = generate_context(
        context_file=str(TEMPLATE_DIR / "cookiecutter.json"), extra_context=overrides
    )
    return dict(prompt_for_config(context, no_input=True))


def template_environment(answers: Mapping[str, object]) -> StrictEnvironment:
    """cookiecutter's Jinja environment (its extensions included) for these answers."""
    return StrictEnvironment(context={"cookiecutter": dict(answers)}, keep_trailing_newline=True)


def render_string(source: str, answers: Mapping[str, object]) -> str:
    """A template text rendered as cookiecutter renders it for these answers."""
    env = template_environment(answers)
    return env.from_string(source).render(cookiecutter=dict(answers))


def render_pyproject(extra_context: dict[str, object]) -> dict[str, object]:
    answers = full_answers(**extra_context)
    return tomllib.loads(render_string(PYPROJECT.read_text(encoding="utf-8"), answers))


def requirements() -> list[str]:
    found: set[str] = set()
    for variant in VARIANTS:
        project = render_pyproject(variant)["project"]
        found.update(project["dependencies"])
        found.update(project["optional-dependencies"]["dev"])
    return sorted(found)


def main() -> int:
    reqs = requirements()
    if "--print" in sys.argv[1:]:
        print("\n".join(reqs))
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "-r"]
    cmd += [str(TEMPLATE_DIR / "requirements-dev.txt"), *reqs]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
