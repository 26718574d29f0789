"""Validate every answer before cookiecutter writes a single file.

On a bad answer this prints one line naming the field, the value and the rule, and exits 1;
cookiecutter then deletes the half-created output directory.
"""

import json
import keyword
import re
import sys

# Jinja renders the answers as JSON (a JSON text never contains three quotes in a row or ends
# in a backslash, so it is safe in this raw string whatever the answers hold).
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

CHOICES = {
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0-only", "Proprietary"),
    "python_version": ("3.11", "3.12", "3.13"),
    "database": ("sqlite", "postgresql"),
}

# Distribution names a project must not take: its own package and its dependencies.
RESERVED_NAMES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "app",
        "asyncpg",
        "b2sdk",
        "bcrypt",
        "email_validator",
        "fastapi",
        "httpx",
        "jwt",
        "limits",
        "loguru",
        "multipart",
        "mypy",
        "pydantic",
        "pydantic_settings",
        "pyjwt",
        "pytest",
        "python_multipart",
        "redis",
        "ruff",
        "sqlalchemy",
        "starlette",
        "test",
        "tests",
        "uvicorn",
    }
)

SLUG_RE = re.compile(r"[a-z](?:[a-z0-9_-]*[a-z0-9])?")
SLUG_MAX = 63  # the PostgreSQL database is named after the slug; identifiers stop at 63 bytes
EMAIL_RE = re.compile(r"[^@\s\"\\]+@[^@\s\"\\.]+(?:\.[^@\s\"\\.]+)+")
VERSION_RE = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:(?:a|b|rc)(0|[1-9]\d*))?(?:\.post\d+)?(?:\.dev\d+)?"
)
# Free text is rendered into TOML, YAML and Python string literals.
FORBIDDEN_TEXT_CHARS = ('"', "\\", "\n", "\r", "\t", "`")


def check_text(value: object, *, required: bool) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    if required and not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with whitespace"
    if any(c in value for c in FORBIDDEN_TEXT_CHARS):
        return "must be one line without double quotes, backslashes, tabs or backticks"
    return None


def check_slug(value: object) -> str | None:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        return (
            "must start with a lowercase letter, contain only lowercase letters, digits, '-' or"
            " '_', and end with a letter or digit"
        )
    if len(value) > SLUG_MAX:
        return f"must be at most {SLUG_MAX} characters long"
    module_name = value.replace("-", "_")
    if keyword.iskeyword(module_name) or keyword.issoftkeyword(module_name):
        return "must not be a Python keyword"
    if module_name in RESERVED_NAMES:
        return "must not shadow the app package or one of its dependencies"
    if module_name in sys.stdlib_module_names:
        return "must not shadow a Python standard library module"
    return None


def check_email(value: object) -> str | None:
    if not isinstance(value, str) or not EMAIL_RE.fullmatch(value):
        return "must look like name@example.com"
    return None


def check_version(value: object) -> str | None:
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        return "must be a PEP 440 release like 0.1.0 (optionally with aN, bN, rcN, .postN, .devN)"
    return None


def check_choice(field: str, value: object) -> str | None:
    if value not in CHOICES[field]:
        return "must be one of " + ", ".join(CHOICES[field])
    return None


def check_bool(value: object) -> str | None:
    if not isinstance(value, bool):
        return "must be a boolean (yes/no, true/false)"
    return None


def find_error() -> str | None:
    """Return the message for the first bad answer, or None when all are good."""
    checks = {
        "project_name": lambda v: check_text(v, required=True),
        "project_slug": check_slug,
        "description": lambda v: check_text(v, required=False),
        "author_name": lambda v: check_text(v, required=True),
        "author_email": check_email,
        "version": check_version,
        "license": lambda v: check_choice("license", v),
        "python_version": lambda v: check_choice("python_version", v),
        "database": lambda v: check_choice("database", v),
        "use_b2_storage": check_bool,
        "use_redis": check_bool,
    }
    for field, check in checks.items():
        value = ANSWERS.get(field)
        rule = check(value)
        if rule is not None:
            return f"ERROR: {field} {value!r} is invalid: {rule}"
    return None


def main() -> int:
    error = find_error()
    if error is None:
        return 0
    print(error, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
