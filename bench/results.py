"""bench/RESULTS.md: the last full run in Markdown (the machine, the versions, the knobs, the
tables, the targets with their verdicts), rendered from the results alone.

Only a full run replaces it (`full_run_gaps` names what a shorter run lacks); BENCH_RESULTS
writes any run's to a path of its choosing.
"""

import re
from pathlib import Path

from bench.config import DEFAULT_STACKS, DEFAULT_VARIANTS, FULL_LENGTHS, ROOT
from bench.pyspy import summaries
from bench.report import (
    TABLE_HEADER,
    TARGET_HEADER,
    Table,
    group_configuration,
    ran,
    scenario_rows,
    served,
    target_rows,
)
from bench.scenarios import GROUPS

# The versions a reader compares first, in this order: (label, results["machine"]["packages"]).
PACKAGES = [("FastAPI", "fastapi"), ("Starlette", "starlette"), ("uvicorn", "uvicorn")]
PACKAGES += [("uvloop", "uvloop"), ("httptools", "httptools"), ("SQLAlchemy", "sqlalchemy")]
PACKAGES += [("asyncpg", "asyncpg"), ("aiosqlite", "aiosqlite"), ("pydantic", "pydantic")]
KNOBS = {
    "BENCH_SCENARIOS": "scenarios",
    "BENCH_SECONDS": "seconds",
    "BENCH_WARMUP": "warmup",
    "BENCH_ROUNDS": "rounds",
    "SOAK_SECONDS": "soak_seconds",
    "BENCH_VARIANTS": "variants",
    "BENCH_STACKS": "stacks",
    "BENCH_SCALE_WORKERS": "scale_workers",
    "BENCH_SCALE_ROUNDS": "scale_rounds",
    "BENCH_WRK_THREADS": "wrk_threads",
    "BENCH_PROFILE": "profile",
}
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def full_run_gaps(config: dict) -> list[str]:
    """What keeps a run from being a full one: none for a full run."""
    gaps = []
    for knob, wanted, chosen in (
        ("BENCH_SCENARIOS", GROUPS, config["scenarios"]),
        ("BENCH_VARIANTS", DEFAULT_VARIANTS.split(","), config["variants"]),
        ("BENCH_STACKS", DEFAULT_STACKS.split(","), config["stacks"]),
    ):
        missing = [item for item in wanted if item not in chosen]
        if missing:
            gaps.append(f"{knob} leaves out {','.join(missing)}")
    gaps += [
        f"{knob}={config[key]} (a full run: {least} or more)"
        for knob, (key, least) in FULL_LENGTHS.items()
        if config[key] < least
    ]
    return gaps


def cell(text: object) -> str:
    """Text for a Markdown table cell or line: no HTML, no column break."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def number(text: str) -> str:
    """A figure as the README prints them: thousands grouped, no decimals from 1,000 up."""
    if NUMBER.fullmatch(text) and abs(float(text)) >= 1000:
        return f"{float(text):,.0f}"
    return text


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; columns of figures (or "-") aligned to the right."""
    figures = [
        i > 0 and all(NUMBER.fullmatch(r[i]) or r[i] == "-" for r in rows)
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---:" if f else "---" for f in figures) + " |")
    for cells in rows:
        shown = [number(c) if f else cell(c) for c, f in zip(cells, figures, strict=True)]
        lines.append("| " + " | ".join(shown) + " |")
    return lines


def versions(results: dict) -> list[list[str]]:
    found, bcrypt = results["machine"], results["bcrypt"]
    packages, servers = found["packages"], found.get("servers", {})
    wrk = re.search(r"wrk (\S+)", found["wrk"])
    rows = [["Python", found["python"]]]
    rows += [[label, packages.get(name, "-")] for label, name in PACKAGES]
    rows += [
        [
            "bcrypt",
            f"{packages.get('bcrypt', '-')}, cost {bcrypt['cost']}: {bcrypt['ms_each']} ms a "
            f"check, {bcrypt['per_second']} checks/s on one thread (best of "
            f"{len(bcrypt['trials_per_second'])})",
        ],
        ["PostgreSQL", servers.get("postgresql") or "-"],
        ["Redis", servers.get("redis") or "-"],
        ["wrk", wrk.group(1) if wrk else found["wrk"]],
        ["Linux", found["kernel"]],
    ]
    return rows


def knob_value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "(none)"
    return str(value)


def markdown(results: dict) -> str:
    found, config = results["machine"], results["config"]
    end = found.get("load_average_at_end")
    gaps = full_run_gaps(config)
    out = [
        "# Benchmark results",
        "",
        "The figures of a `make bench` run (`python -m bench`), written by it: "
        "`bench/RESULTS.md` holds the last full run, and git the earlier ones. What each "
        "scenario does is in the docstrings of `bench/scenarios/`, the knobs in "
        "`bench/__init__.py`. The machine is shared: compare ratios taken in the same run "
        "rather than figures across runs.",
        "",
    ]
    if gaps:
        out += [f"**Not a full run**: {cell('; '.join(gaps))}.", ""]
    out += [
        f"Measured {results['date']}, wall time {results['wall_seconds']:,.0f} s, template "
        f"{cell(found['template_revision'])}, on {found['nproc']} cores "
        f"({cell(found['cpu'])}); load average {found['load_average_at_start'][0]:.2f} at the "
        "start" + (f" and {end[0]:.2f} at the end." if end else "."),
        "",
    ]
    headline = [line for group in ran(results) for line in group.headline(results)]
    if headline:
        out += ["## Headline", "", *(f"- {cell(line)}" for line in headline), ""]
    out += ["## Versions", "", *md_table(["", "version"], versions(results)), ""]
    knobs = [[knob, knob_value(config[key])] for knob, key in KNOBS.items()]
    out += ["## Configuration", "", *md_table(["knob", "value"], knobs), ""]
    out += [f"- {cell(line)}" for line in [*served(results), *group_configuration(results)]]
    out += ["", "## Figures", "", *md_table(TABLE_HEADER, scenario_rows(results)), ""]
    for group in ran(results):
        for detail in group.details(results):
            if isinstance(detail, Table):
                out += md_table(detail.header, detail.rows)
            else:
                out.append(cell(detail))
            out.append("")
    verdicts = [t["verdict"] for t in results["targets"]]
    out += [
        "## Targets",
        "",
        f"{verdicts.count('PASS')} of {len(verdicts)} pass.",
        "",
        *md_table(TARGET_HEADER, [[*r[:-1], f"**{r[-1]}**"] for r in target_rows(results)]),
        "",
    ]
    profiles = summaries(results)
    if profiles:
        out += ["## Profiles", ""]
        for lines in profiles:
            out += ["```text", *lines, "```", ""]
    return "\n".join(out)


def write(results: dict, path: Path | None, default: Path) -> str:
    """RESULTS.md written to `path` if given (any run), else to `default` for a full run only;
    says which, or why it was kept.
    """
    gaps = full_run_gaps(results["config"])
    if path is None and gaps:
        return (
            f"{shown(default)} kept: not a full run ({'; '.join(gaps)}); "
            "BENCH_RESULTS=<path> writes this run's elsewhere"
        )
    target = path or default
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown(results), encoding="utf-8")
    return f"results written to {shown(target)}" + (" (not a full run)" if gaps else "")


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
