"""The rendered project's documents, README.md and docs/*.md, as the docs tests read them: their
fenced blocks and the commands in them, their headings' anchors and their relative links.
"""

import functools
import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from helpers import PROJECT_TEMPLATE, all_combinations, disabled_files, render_files, variant_id
from install_rendered_deps import full_answers

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)")
# The first line of a shell block that the tests do not run: it says so to the reader, and why.
NOT_RUN = "# Not run by the template's tests: "
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")


def is_document(rel: str) -> bool:
    return rel == "README.md" or (rel.startswith("docs/") and rel.endswith(".md"))


def document_order(documents: dict[str, str]) -> list[str]:
    """README.md first (its quick start prepares what the others use), then docs/ by name."""
    return sorted(documents, key=lambda rel: (rel != "README.md", rel))


@dataclass(frozen=True)
class Block:
    document: str
    line: int  # of the opening fence
    language: str
    lines: tuple[str, ...]

    @property
    def marked_not_run(self) -> bool:
        return bool(self.lines) and self.lines[0].startswith(NOT_RUN)


@dataclass(frozen=True)
class Command:
    document: str
    line: int
    text: str  # as the document shows it, continuation lines included

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def words(self) -> str:
        """The command without its comment, its words joined by one space."""
        return " ".join(shlex.split(self.text.replace("\\\n", " "), comments=True))


def fenced_blocks(document: str, text: str) -> list[Block]:
    blocks: list[Block] = []
    opening: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if opening is None and match:
            opening, body = (number, match.group(1), match.group(2)), []
        elif opening is not None and line.strip() == opening[1]:
            blocks.append(Block(document, opening[0], opening[2], tuple(body)))
            opening = None
        elif opening is not None:
            body.append(line)
    assert opening is None, f"{document}:{opening[0]}: a fenced block is never closed"
    return blocks


def commands(block: Block) -> Iterator[Command]:
    """The commands of a shell block that is not marked as not run: each line but blank and
    comment lines, with its `\\` continuations; in a `console` block, each line after `$ `.
    """
    if block.language not in SHELL_LANGUAGES or block.marked_not_run:
        return
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(block.lines, 1):
        if not pending:
            if block.language == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = block.line + offset
        pending.append(line)
        if not line.endswith("\\"):
            yield Command(block.document, start, "\n".join(pending))
            pending = []
    assert not pending, f"{block.document}:{start}: a continuation runs off the block's end"


def document_commands(documents: dict[str, str]) -> Iterator[tuple[Block, Command | None]]:
    """Every fenced block of the documents in their order, with each of its commands (None for
    a block without any).
    """
    for rel in document_order(documents):
        for block in fenced_blocks(rel, documents[rel]):
            found = list(commands(block))
            for command in found or [None]:
                yield block, command


# --- Every combination, from the rendered text alone ----------------------------------------------

TEMPLATE_PATHS = sorted(
    path.relative_to(PROJECT_TEMPLATE).as_posix()
    for path in PROJECT_TEMPLATE.rglob("*")
    if path.is_file() and "__pycache__" not in path.parts
)


@dataclass(frozen=True)
class Rendered:
    name: str
    answers: dict[str, object]
    documents: dict[str, str]
    makefile: str


@functools.cache
def every_combination() -> tuple[Rendered, ...]:
    """The documents and the Makefile of every combination of options."""
    rendered = []
    for combo in all_combinations():
        answers = full_answers(**combo)
        files = render_files(answers, lambda rel: is_document(rel) or rel == "Makefile")
        makefile = files.pop("Makefile")
        rendered.append(Rendered(variant_id(combo), answers, files, makefile))
    return tuple(rendered)


def by_problem(found: Iterator[tuple[str, str]]) -> str:
    """(combination, problem) pairs, one line per problem with the combinations that have it."""
    combinations: dict[str, list[str]] = {}
    for name, problem in found:
        combinations.setdefault(problem, []).append(name)
    return "\n".join(
        f"{problem} [in {len(names)} combination(s), e.g. {names[0]}]"
        for problem, names in sorted(combinations.items())
    )


def project_paths(answers: dict[str, object]) -> set[str]:
    """The files of a render: the template's, less those the hook removes and the license
    texts it replaces with LICENSE, plus LICENSE and the .env it writes.
    """
    disabled = set(disabled_files(answers))
    kept = {rel for rel in TEMPLATE_PATHS if rel not in disabled}
    return {rel for rel in kept if not rel.startswith("licenses/")} | {"LICENSE", ".env"}


# --- Links ----------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced blocks."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            yield number, line


def anchors(text: str) -> set[str]:
    """The anchors of a document's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose(text):
        if match := re.match(r"#{1,6} (.+)", line):
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(f"{anchor}-{count}" if count else anchor)
    return found


def _parents(path: str) -> Iterator[str]:
    directory = posixpath.dirname(path)
    while directory:
        yield directory
        directory = posixpath.dirname(directory)


def link_problems(rel: str, documents: dict[str, str], paths: set[str]) -> Iterator[str]:
    """The relative links of document `rel` (outside code) whose file, directory or heading is
    not in the render.
    """
    directories = {parent for path in paths for parent in _parents(path)}
    for number, line in prose(documents[rel]):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if URL_SCHEME.match(target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), path))
            resolved = resolved if path else rel
            where = f"{rel}:{number}: ({target})"
            if resolved == ".." or resolved.startswith("../"):
                yield f"{where} points outside the project"
            elif resolved not in paths and resolved not in directories:
                yield f"{where}: no {resolved} in this render"
            elif anchor and resolved not in documents:
                yield f"{where}: an anchor into {resolved}, which is not a checked document"
            elif anchor and anchor not in anchors(documents[resolved]):
                yield f"{where}: {resolved} has no heading #{anchor}"
