"""Render every combination of options and check the rendered tree without running it."""

import re
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from helpers import (
    BIN,
    CHOICES,
    COOKIECUTTER_JSON,
    all_combinations,
    check_files,
    default_answers,
    run,
    text_files,
    variant_id,
)
from install_rendered_deps import render_pyproject
from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

COMBINATIONS = all_combinations()

JINJA_LEFTOVER = re.compile(r"\{\{|\{%|\{#|%\}|#\}")
# GitHub Actions expressions are legitimate in workflows: `${{ ... }}`.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")

# With use_b2_storage off, none of these may match anywhere in the rendered tree.
B2_TRACES = {
    "b2 word": re.compile(r"(?i)\bb2(?:sdk)?\b"),
    "b2 setting": re.compile(r"(?i)\bb2_\w+"),
    "backblaze": re.compile(r"(?i)back_?blaze"),
    "/files route": re.compile(r"""["'/]files\b"""),
    "files name": re.compile(r"""["']files["']"""),
    "file name import": re.compile(
        r"(?m)^\s*from\s+[\w.]+\s+import\s+[^\n]*\b(?:files?|back_blaze\w*)\b"
    ),
    "file module import": re.compile(
        r"(?m)^\s*(?:from|import)\s+[\w.]*\.(?:files?|back_blaze\w*)\b"
    ),
    "upload": re.compile(r"\bUploadFile\b"),
}

# With use_redis off, none of these may match: no import, setting, dependency, compose
# service or test of Redis (prose may still name the option).
REDIS_TRACES = {
    "redis import": re.compile(r"(?m)^\s*(?:from|import)\s+redis\b"),
    "redis setting": re.compile(r"(?i)\bredis_\w+"),
    "redis dependency": re.compile(r"(?i)[\"']redis\s*[=<>~\[]"),
    "redis URL": re.compile(r"(?i)\bredis://"),
    "redis service": re.compile(r"(?im)^\s+redis:\s*$"),
    "redis module": re.compile(r"\bcore[./]redis\b"),
    "taskiq-redis": re.compile(r"(?i)taskiq[-_]redis"),
    "worker entry": re.compile(r"\bapp[./:]worker\b"),
    "stream broker": re.compile(
        r"stream_broker|StreamBroker|consumer_lease|ConsumerLease|DeadLetters"
    ),
    "worker target or service": re.compile(r"(?m)^(?:  )?worker:"),
}

SECRET_KEY_LINE = re.compile(r"SECRET_KEY=([A-Za-z0-9_-]+)")
# The app's own Jinja2 templates (the e-mails): copied as they are, never rendered by cookiecutter.
COPIED_AS_IS = tuple(f"{path}/" for path in COOKIECUTTER_JSON["_copy_without_render"])


def check_text(root: Path, answers: dict[str, object]) -> list[str]:
    problems = []
    for path, text in text_files(root):
        rel = path.relative_to(root).as_posix()
        if not text.strip() and path.name != "__init__.py":
            problems.append(f"empty file {rel}")
        scanned = GITHUB_EXPRESSION.sub("", text) if rel.startswith(".github/") else text
        if rel.startswith(COPIED_AS_IS):
            # Their Jinja is the app's; cookiecutter's answers cannot reach them.
            if "cookiecutter" in text:
                problems.append(f"{rel} is copied as it is, yet names cookiecutter")
            scanned = ""
        for match in JINJA_LEFTOVER.finditer(scanned):
            line = scanned.count("\n", 0, match.start()) + 1
            problems.append(f"unrendered Jinja {match.group()!r} in {rel}:{line}")
        for option, traces in (("use_b2_storage", B2_TRACES), ("use_redis", REDIS_TRACES)):
            if answers[option]:
                continue
            for what, pattern in traces.items():
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    problems.append(f"{option} off, yet ({what}) {match.group()!r} in {rel}:{line}")
    return problems


def check_variant_content(root: Path, answers: dict[str, object]) -> list[str]:
    """What each answer adds: dependencies, settings, compose services, Python version."""
    problems = []
    try:
        pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [f"pyproject.toml unreadable: {exc}"]
    project = pyproject.get("project", {})
    deps = " ".join(project.get("dependencies", []))
    version = answers["python_version"]
    expected = {
        "requires-python": (project.get("requires-python"), f">={version}"),
        "ruff target-version": (
            pyproject.get("tool", {}).get("ruff", {}).get("target-version"),
            f"py{str(version).replace('.', '')}",
        ),
        "mypy python_version": (
            pyproject.get("tool", {}).get("mypy", {}).get("python_version"),
            version,
        ),
        "project name": (project.get("name"), answers["project_slug"]),
    }
    problems += [f"{k}: {got!r} != {want!r}" for k, (got, want) in expected.items() if got != want]
    if f"python:{version}" not in (root / "Dockerfile").read_text(encoding="utf-8"):
        problems.append(f"Dockerfile does not use a python:{version} base image")

    env_example = (root / ".env.example").read_text(encoding="utf-8")
    postgres = answers["database"] == "postgresql"
    wanted_url = (
        "DATABASE_URL=postgresql+asyncpg://" if postgres else "DATABASE_URL=sqlite+aiosqlite"
    )
    if wanted_url not in env_example:
        problems.append(f".env.example lacks {wanted_url}")
    for dep, wanted in [("asyncpg", postgres), ("aiosqlite", not postgres)]:
        if (dep in deps) != wanted:
            problems.append(f"dependency {dep} {'missing' if wanted else 'present'}")
    if postgres != ("DB_POOL_SIZE=" in env_example):
        problems.append("DB_POOL_SIZE in .env.example must be there for postgresql only")
    compose = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))
    images = [str(s.get("image", "")) for s in (compose.get("services") or {}).values()]
    if postgres != any(image.startswith("postgres") for image in images):
        problems.append(f"compose postgres service must be there for postgresql only: {images}")
    if answers["use_b2_storage"]:
        if "b2sdk" not in deps:
            problems.append("dependency b2sdk missing")
        if "B2_BUCKET_NAME=" not in env_example:
            problems.append(".env.example lacks B2_BUCKET_NAME")
    if answers["use_redis"]:
        if "redis==" not in deps:
            problems.append("dependency redis missing")
        if "REDIS_URL=" not in env_example:
            problems.append(".env.example lacks REDIS_URL")
    if "limits==" not in deps:
        problems.append("dependency limits missing (rate limits exist in every variant)")
    return problems


def check_env(root: Path) -> list[str]:
    example = (root / ".env.example").read_text(encoding="utf-8")
    env = (root / ".env").read_text(encoding="utf-8")
    problems = []
    if "SECRET_KEY=change-me" not in example.splitlines():
        problems.append(".env.example must carry the SECRET_KEY=change-me placeholder")
    match = SECRET_KEY_LINE.search(env)
    if not match or len(match.group(1)) < 64 or match.group(1) == "change-me":
        problems.append(".env has no fresh url-safe SECRET_KEY of 64+ characters")
    elif env.replace(match.group(0), "SECRET_KEY=change-me") != example:
        problems.append(".env differs from .env.example beyond SECRET_KEY")
    if stat.S_IMODE((root / ".env").stat().st_mode) & 0o077:
        problems.append(".env is readable by others")
    if ".env" not in (root / ".gitignore").read_text(encoding="utf-8").split():
        problems.append(".gitignore does not ignore .env")
    return problems


def check_ruff(root: Path) -> list[str]:
    problems = []
    for cmd in (["check"], ["format", "--check"]):
        proc = run([str(BIN / "ruff"), *cmd, "--no-cache", "."], cwd=root)
        if proc.returncode != 0:
            problems.append(f"ruff {' '.join(cmd)} failed:\n{proc.stdout}")
    return problems


def assert_no_problems(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("answers", COMBINATIONS, ids=variant_id)
def test_render_combination(cookies, answers):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, repr(result.exception)
    assert result.exception is None
    root = result.project_path
    assert root.name == "my-service"
    answers = {**default_answers(), **answers}
    problems = check_files(root, answers)
    problems += check_text(root, answers)
    if not problems:
        problems += check_variant_content(root, answers)
        problems += check_env(root)
        problems += check_ruff(root)
    assert_no_problems(problems)


@pytest.mark.parametrize(
    "overrides",
    [
        {"project_name": "Bob's Café Service", "project_slug": "bobs_cafe2"},
        {"description": "", "author_name": "Zoë O'Brien", "version": "1.2.3rc1"},
    ],
    ids=["unusual-name", "unusual-metadata"],
)
def test_unusual_but_valid_answers_render_cleanly(cookies, overrides):
    result = cookies.bake(extra_context=overrides)
    assert result.exit_code == 0, repr(result.exception)
    root = result.project_path
    answers = default_answers(**overrides)
    assert root.name == answers["project_slug"]
    problems = check_files(root, answers) + check_text(root, answers)
    if not problems:
        problems += check_variant_content(root, answers) + check_ruff(root)
    assert_no_problems(problems)


def test_each_render_gets_its_own_secret_key(cookies):
    secrets = set()
    for _ in range(2):
        result = cookies.bake()
        assert result.exit_code == 0, repr(result.exception)
        env = (result.project_path / ".env").read_text(encoding="utf-8")
        match = SECRET_KEY_LINE.search(env)
        assert match, env
        secrets.add(match.group(1))
    assert len(secrets) == 2


@pytest.mark.parametrize("license_", CHOICES["license"])
def test_license_is_a_valid_spdx_expression(license_):
    # hatchling (and PyPI) refuse a `project.license` that is not an SPDX expression, which
    # would make the rendered project uninstallable.
    rendered = render_pyproject({"license": license_})["project"]["license"]
    try:
        canonicalize_license_expression(rendered)
    except InvalidLicenseExpression as exc:
        pytest.fail(f"license {license_!r} renders project.license = {rendered!r}: {exc}")


# The SPDX texts of the two short licenses, with their fields as SPDX marks them; the long ones
# are compared with Debian's verbatim copies (/usr/share/common-licenses, from base-files).
SPDX_TEXTS = {
    "MIT": """MIT License

Copyright (c) <year> <copyright holders>

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
""",
    "BSD-3-Clause": """Copyright (c) <year>, <copyright holder>

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
""",
}
DEBIAN_COPIES = {"Apache-2.0": "Apache-2.0", "GPL-3.0-only": "GPL-3"}


@pytest.mark.parametrize("license_", CHOICES["license"])
def test_license_file_holds_the_standard_text(cookies, license_):
    author = "Zoë Example"
    result = cookies.bake(extra_context={"license": license_, "author_name": author})
    assert result.exit_code == 0, repr(result.exception)
    text = (result.project_path / "LICENSE").read_text(encoding="utf-8")
    year = str(datetime.now(UTC).year)
    if license_ in SPDX_TEXTS:
        expected = SPDX_TEXTS[license_].replace("<year>", year)
        expected = re.sub(r"<copyright holders?>", author, expected)
        assert text == expected
    elif license_ in DEBIAN_COPIES:
        official = Path("/usr/share/common-licenses", DEBIAN_COPIES[license_])
        notice, _, body = text.partition("\n\n")
        assert notice in {f"Copyright {year} {author}", f"Copyright (C) {year} {author}"}
        assert body == official.read_text(encoding="utf-8")
    else:
        assert f"Copyright (c) {year} {author}. All rights reserved." in text
        assert "without the prior written permission" in text
