"""A render's `app/` speaks of its own variant only.

Comments, docstrings, messages and code alike: a PostgreSQL render names no SQLite, a SQLite
render no PostgreSQL, and a render without Redis no Redis, except for the pointers below to an
option one could render with. A description of how the other variant behaves is not such a
pointer. (B2 is checked for the whole tree by test_render.py.)

The files are rendered with cookiecutter's Jinja environment (`render_files`) for every
combination of the options that change code; the post-generation hook's removals are applied.
"""

import itertools
import re
from typing import NamedTuple

import pytest
from helpers import CHOICES, COOKIECUTTER_JSON, full_answers, render_files, variant_id


class ForeignWords(NamedTuple):
    option: str  # the answer that leaves them out
    answer: object
    words: re.Pattern[str]
    # file -> the exact phrases that may name them there: pointers to the other answer.
    pointers: dict[str, tuple[str, ...]]


FOREIGN_WORDS = (
    ForeignWords("database", "postgresql", re.compile(r"(?i)sqlite"), {}),
    ForeignWords("database", "sqlite", re.compile(r"(?i)postgres|asyncpg|pgbouncer"), {}),
    ForeignWords(
        "use_redis",
        False,
        re.compile(r"(?i)redis"),
        {
            "app/main.py": ("use Redis to share them",),
            "app/jobs/broker.py": ("render the template with Redis",),
        },
    ),
)
# The app's own Jinja2 templates (the e-mails) are copied as they are: no variant in them.
COPIED_AS_IS = tuple(f"{path}/" for path in COOKIECUTTER_JSON["_copy_without_render"])
COMBINATIONS = [
    {"database": database, "use_b2_storage": b2, "use_redis": redis}
    for database, b2, redis in itertools.product(CHOICES["database"], (False, True), (False, True))
]


def is_app_file(rel: str) -> bool:
    return rel.startswith("app/") and not rel.startswith(COPIED_AS_IS)


def foreign_lines(rel: str, text: str, foreign: ForeignWords) -> list[str]:
    """The lines of `text` that name the other variant outside the pointers allowed there."""
    for phrase in foreign.pointers.get(rel, ()):
        text = text.replace(phrase, " " * len(phrase))
    return [
        f"{rel}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if foreign.words.search(line)
    ]


@pytest.mark.parametrize("combo", COMBINATIONS, ids=variant_id)
def test_the_app_names_no_other_variant(combo: dict[str, object]) -> None:
    files = render_files(full_answers(**combo), is_app_file)
    found = []
    for foreign in FOREIGN_WORDS:
        if combo[foreign.option] != foreign.answer:
            continue
        for rel, text in files.items():
            found += foreign_lines(rel, text, foreign)
            found += [
                f"{rel}: the allowed pointer {phrase!r} is gone: drop it from the list"
                for phrase in foreign.pointers.get(rel, ())
                if phrase not in text
            ]
    assert not found, "\n".join(found)


def test_a_description_of_the_other_database_is_found() -> None:
    """The check itself: a comment about the other database fails it; a pointer does not."""
    postgresql, sqlite, redis = FOREIGN_WORDS
    comment = "# SQLite needs no lock: its write transactions already run one at a time.\n"
    assert foreign_lines("app/repos/user.py", comment, postgresql) == [
        "app/repos/user.py:1: # SQLite needs no lock: its write transactions already run one "
        "at a time."
    ]
    assert foreign_lines("app/x.py", "# aiosqlite's thread\n", postgresql)
    assert foreign_lines("app/x.py", "# the PgBouncer mode\n", sqlite)
    pointer = "    # ...; render the template with Redis\n"
    assert foreign_lines("app/jobs/broker.py", pointer, redis) == []
    assert foreign_lines("app/main.py", pointer, redis)
