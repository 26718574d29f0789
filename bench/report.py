"""The report: what a scenario group contributes (Scenario), the table's rows, the targets with
their verdicts, the configuration lines, and the text printed at the end of a run.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.scenarios import GROUPS, scenario

TABLE_HEADER = ["scenario", "variant", "workers", "redis", "req/s", "p50 ms", "p99 ms"]
TABLE_HEADER += ["errors", "ratio"]
TARGET_HEADER = ["target", "variant", "value", "limit", "verdict"]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


def nothing(results: dict) -> list:
    return []


@dataclass(frozen=True)
class Scenario:
    """A group of scenarios: `run` measures and adds its figures to the results; the rest read
    them back. `settings` are its fixed parameters, recorded in results["config"].
    """

    name: str
    run: Callable[[dict], None]
    rows: Callable[[dict], list[list[str]]]  # its rows of the one table (TABLE_HEADER)
    targets: Callable[[dict], list[dict]]  # made with target()
    configuration: Callable[[dict], list[str]]  # how it ran, a line each
    details: Callable[[dict], list[Table | str]] = nothing  # printed after the table
    headline: Callable[[dict], list[str]] = nothing  # the ratios a reader looks at first
    settings: dict[str, object] = field(default_factory=dict)


def registered() -> list[Scenario]:
    return [scenario(name) for name in GROUPS]


def ran(results: dict) -> list[Scenario]:
    """The registered groups this run ran, in their order."""
    return [found for found in registered() if found.name in results["config"]["scenarios"]]


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def times(value: float | None, reference: float | None) -> str:
    """`value` as a multiple of `reference`: "0.85 x"."""
    found = ratio(value, reference)
    return "-" if found is None else f"{found:.2f} x"


def fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def row(
    label: str, variant: str, workers: object, redis: str, figures: dict, note: str, **kw: object
) -> list[str]:
    """A row of the table: `figures` as wrk_result or combine gives them; `rps` and `errors`
    override theirs.
    """
    return [
        label,
        variant,
        str(workers),
        redis,
        fmt(kw.get("rps", figures["rps"]), ".1f"),
        fmt(figures["p50_ms"], ".1f"),
        fmt(figures["p99_ms"], ".1f"),
        str(kw.get("errors", figures["errors"])),
        note,
    ]


def statuses_text(result: dict) -> str:
    return ", ".join(f"{code}: {n}" for code, n in result.get("statuses", {}).items())


COMPARE = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


def target(
    variant: str, name: str, value: object, limit: str, ok: bool | None = None
) -> dict[str, object]:
    """A target and its verdict: `ok`, or else `value` against `limit` ("<op> <number>")."""
    if ok is None:
        match = re.fullmatch(r"(>=|<=|==) (-?[\d.]+)", limit)
        if not match:
            raise ValueError(f"target {name!r}: no verdict for the limit {limit!r}")
        ok = value is not None and COMPARE[match.group(1)](value, float(match.group(2)))
    verdict = "PASS" if ok else "FAIL"
    return {"variant": variant, "target": name, "value": value, "limit": limit, "verdict": verdict}


def targets(results: dict) -> list[dict]:
    return [found for group in ran(results) for found in group.targets(results)]


def scenario_rows(results: dict) -> list[list[str]]:
    return [found for group in ran(results) for found in group.rows(results)]


def target_rows(results: dict) -> list[list[str]]:
    return [
        [t["target"], t["variant"], fmt(t["value"]), t["limit"], t["verdict"]]
        for t in results["targets"]
    ]


def served(results: dict) -> list[str]:
    """How every server was served: the Dockerfile's command, its ENV, what the bench sets."""
    found = results["config"]["served_as"]
    return [
        f"every server: {' '.join(found['command'])} (the Dockerfile's CMD; host and port "
        f"here 127.0.0.1 and a free port), on {found['stack']} unless a row names its stack; "
        "its ENV: " + " ".join(f"{k}={v}" for k, v in found["dockerfile_env"].items()),
        "services: no .env (as in the image), settings at their defaults except "
        + " ".join(f"{k}={v}" for k, v in found["set"].items())
        + "; so CURRENT_ENVIRONMENT=prod, one JSON log line per request; ceiling: "
        "bench/ceiling_app.py, limit app: bench/limit_app.py, same command and stack",
    ]


def group_configuration(results: dict) -> list[str]:
    return [line for group in ran(results) for line in group.configuration(results)]


def configuration(results: dict) -> list[str]:
    """How the run ran: the machine, the knobs, how every server is served, the packages, and
    each group's own lines.
    """
    config, found = results["config"], results["machine"]
    end = found.get("load_average_at_end")
    return [
        f"make bench, {results['date']} on {found['cpu']} ({found['nproc']} cores), "
        f"template {found['template_revision']}; scenarios {','.join(config['scenarios'])}; "
        f"{config['seconds']}s runs after {config['warmup']}s warm-up"
        + (f", soak {config['soak_seconds']}s" if "base" in config["scenarios"] else "")
        + f"; wrk -t{config['wrk_threads']} per load",
        f"load average at start {found['load_average_at_start'][0]:.2f}"
        + (f", at the end {end[0]:.2f}" if end else "")
        + f"; bcrypt cost {results['bcrypt']['cost']}, one thread: "
        f"{results['bcrypt']['per_second']} checks/s ({results['bcrypt']['ms_each']} ms each)",
        *served(results),
        "packages: " + ", ".join(f"{name} {v}" for name, v in found["packages"].items()),
        *group_configuration(results),
    ]


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table: the first two columns to the left, the others to the right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    for cells in rows:
        lines.append(
            " | ".join(
                str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(lines)


def report(results: dict) -> str:
    """The text a run prints: its configuration, the table, each group's details, the targets."""
    out = [*configuration(results), "", table(scenario_rows(results), TABLE_HEADER), ""]
    for group in ran(results):
        for detail in group.details(results):
            out += [table(detail.rows, detail.header) if isinstance(detail, Table) else detail, ""]
    out.append(table(target_rows(results), TARGET_HEADER))
    return "\n".join(out)
