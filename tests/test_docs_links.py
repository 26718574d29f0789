"""Every relative link of the rendered README.md and docs/*.md resolves, in every combination of
options: to a file or directory of that render and, with `#...`, to a heading of the document
(GitHub's anchors).
"""

from rendered_docs import by_problem, every_combination, link_problems, project_paths


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
