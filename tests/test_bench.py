"""The bench package stays whole: every scenario group registered, every knob documented, no
module too long to read, and the report and bench/RESULTS.md rendered from a recorded run.

tests/bench_results.json is build/bench.json of a short run of every group (BENCH_SECONDS=2
BENCH_WARMUP=1 SOAK_SECONDS=5 BENCH_ROUNDS=1 BENCH_SCALE_ROUNDS=1), trimmed of the figures
nothing reads back (each round's own, the RSS series). No server runs here.
"""

import ast
import copy
import json
import re
import sys
from pathlib import Path

import pytest
from helpers import PYTHON, TEMPLATE_DIR, check

sys.path.insert(0, str(TEMPLATE_DIR))

import bench
from bench.config import FULL_LENGTHS
from bench.report import TABLE_HEADER, report, scenario_rows
from bench.results import full_run_gaps, markdown, write
from bench.scenarios import GROUPS, scenario

BENCH = TEMPLATE_DIR / "bench"
RECORDED = Path(__file__).with_name("bench_results.json")
MAX_LINES = 400


@pytest.fixture
def recorded() -> dict:
    return json.loads(RECORDED.read_text(encoding="utf-8"))


def full(results: dict) -> dict:
    """The recorded run as a full run would record it."""
    results = copy.deepcopy(results)
    results["config"].update(dict(FULL_LENGTHS.values()))
    return results


def defines_scenario(path: Path) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "SCENARIO" for t in node.targets)
        for node in ast.parse(path.read_text(encoding="utf-8")).body
    )


def test_every_scenario_module_is_registered_under_its_name():
    modules = {path.stem for path in (BENCH / "scenarios").glob("*.py") if defines_scenario(path)}
    assert modules == set(GROUPS), "a module of bench/scenarios/ with a SCENARIO is a group"
    assert [scenario(name).name for name in GROUPS] == list(GROUPS)


def test_every_module_reads_in_one_sitting():
    long = {
        str(path.relative_to(TEMPLATE_DIR)): n
        for path in BENCH.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_help_names_every_knob_the_bench_reads():
    knobs = {
        name
        for path in BENCH.rglob("*.py")
        for name in re.findall(r"""environ\.get\(\s*"([A-Z_]+)\"""", path.read_text())
    }
    knobs |= {
        name
        for path in BENCH.rglob("*.py")
        for name in re.findall(r"""_list\(\s*"([A-Z_]+)\"""", path.read_text())
    }
    assert {"BENCH_SECONDS", "BENCH_SCENARIOS", "SOAK_SECONDS"} <= knobs
    shown = check([PYTHON, "-m", "bench", "--help"], TEMPLATE_DIR, timeout=60)
    documented = set(re.findall(r"^  ([A-Z_]+)=", shown, re.MULTILINE))
    assert knobs <= documented, f"knobs missing from bench/__init__.py: {knobs - documented}"
    assert shown.strip() == (bench.__doc__ or "").strip()


def test_the_report_has_a_row_for_every_figure_of_the_recorded_run(recorded):
    text = report(recorded)
    rows = scenario_rows(recorded)
    # Each group's rows: the recorded run ran every group.
    labels = {r[0] for r in rows}
    assert {"GET /health c64", "GET /users/me c64 side by side"} <= labels
    assert any(label.startswith("GET /users/me c64 [") for label in labels)  # stacks
    assert any("429/s" in label for label in labels)  # scale, addresses
    for cells in rows:
        assert all(c in text for c in cells), cells
    assert all(t["target"] in text for t in recorded["targets"])


def test_results_markdown_renders_the_recorded_run(recorded):
    text = markdown(full(recorded))
    assert "Not a full run" not in text
    table = "| " + " | ".join(TABLE_HEADER) + " |"
    assert table in text
    for name in ("Python", "FastAPI", "SQLAlchemy", "asyncpg", "bcrypt", "PostgreSQL", "wrk"):
        assert f"| {name} |" in text
    assert f"cost {recorded['bcrypt']['cost']}" in text
    assert recorded["machine"]["template_revision"].split()[0] in text
    for found in recorded["targets"]:
        assert f"| {found['target']} | {found['variant']} |" in text
    verdicts = re.findall(r"\| \*\*(PASS|FAIL)\*\* \|$", text, re.MULTILINE)
    assert verdicts == [found["verdict"] for found in recorded["targets"]]
    body = [line for line in text.splitlines() if line.startswith("|")]
    assert len(body) >= len(scenario_rows(recorded)) + len(recorded["targets"])
    assert "<" not in text, "raw HTML in the Markdown (escape < as &lt;)"


def test_only_a_full_run_replaces_results_md(recorded, tmp_path):
    gaps = full_run_gaps(recorded["config"])
    assert any(gap.startswith("BENCH_SECONDS=2") for gap in gaps), gaps
    assert not full_run_gaps(full(recorded)["config"])
    default = tmp_path / "RESULTS.md"

    said = write(recorded, None, default)
    assert "kept" in said
    assert "BENCH_SECONDS=2" in said
    assert not default.exists()

    chosen = tmp_path / "short.md"
    write(recorded, chosen, default)
    assert "Not a full run" in chosen.read_text(encoding="utf-8")
    assert not default.exists()

    write(full(recorded), None, default)
    assert default.read_text(encoding="utf-8").startswith("# Benchmark results")


def test_make_bench_runs_the_package():
    makefile = (TEMPLATE_DIR / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/python -m bench" in recipe
