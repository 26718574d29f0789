"""Every relative link of the rendered README.md and docs/*.md resolves, in every combination of
options: to a file or directory of that render and, with `#...`, to a heading of the document
(GitHub's anchors). The template's own README.md and bench/README.md are held to the same rule.
"""

import os
from pathlib import Path

from rendered_docs import by_problem, every_combination, link_problems, project_paths

REPOSITORY = Path(__file__).resolve().parents[1]
TEMPLATE_DOCUMENTS = ("README.md", "bench/README.md")
NOT_THE_REPOSITORY = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}


def test_relative_links_resolve_in_every_combination():
    problems: list[tuple[str, str]] = []
    links = 0
    for rendered in every_combination():
        paths = project_paths(rendered.answers)
        for rel, text in rendered.documents.items():
            links += text.count("](")
            found = link_problems(rel, rendered.documents, paths)
            problems += [(rendered.name, problem) for problem in found]
    assert links, "no link in any rendered document"
    assert not problems, by_problem(iter(problems))


def test_the_template_s_own_documents_link_to_what_exists():
    paths: set[str] = set()
    for directory, subdirectories, files in os.walk(REPOSITORY):
        subdirectories[:] = [name for name in subdirectories if name not in NOT_THE_REPOSITORY]
        here = Path(directory).relative_to(REPOSITORY)
        paths.update((here / name).as_posix() for name in files)
    documents = {rel: (REPOSITORY / rel).read_text(encoding="utf-8") for rel in TEMPLATE_DOCUMENTS}
    problems = [problem for rel in documents for problem in link_problems(rel, documents, paths)]
    assert not problems, "\n".join(problems)


def test_a_missing_file_or_heading_is_found():
    documents = {
        "README.md": "# Title\n\n## Quick start\n\n[ok](docs/a.md#a-b) [bad](docs/b.md)\n",
        "docs/a.md": "# A, b\n\n[up](../README.md#quick-start) [gone](../README.md#nowhere)\n"
        "`[in code](not/checked.md)` [dir](../deploy/) [out](../../x)\n"
        "```text\n[in a block](not/checked.md)\n```\n",
    }
    paths = {"README.md", "docs/a.md", "deploy/kubernetes/x.yaml"}
    found = [problem for rel in documents for problem in link_problems(rel, documents, paths)]
    assert found == [
        "README.md:5: (docs/b.md): no docs/b.md in this render",
        "docs/a.md:3: (../README.md#nowhere): README.md has no heading #nowhere",
        "docs/a.md:4: (../../x) points outside the project",
    ]
