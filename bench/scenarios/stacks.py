"""stacks: the PostgreSQL variant and the ceiling on each server stack of BENCH_STACKS (uvicorn
with another uvloop, uvicorn --loop asyncio, granian), next to the services' own stack (the
rendered pins).

All are served side by side (idle ones cost nothing) and measured in alternating rounds: the
ceiling's /health, the service's /health and /users/me at 64 connections. A uvloop or granian
other than the shared virtualenv's is installed with pip into build/bench/stacks/ and put first
on PYTHONPATH.
"""

import contextlib
import re

from bench.config import BENCH_DIR, ROUNDS, STACKS
from bench.load import Load, bearer, get_script, interleaved
from bench.report import Scenario, ratio, row, target
from bench.serving import (
    DEFAULT_STACK,
    admin_token,
    base_env,
    prepared,
    render,
    service_env,
    serving,
    stack,
)

MEASURED = (
    ("GET /health c64", "ceiling_health_64", "ceiling"),
    ("GET /health c64", "health_64", "postgresql"),
    ("GET /users/me c64", "me_64", "postgresql"),
)


def run(results: dict) -> None:
    stacks = [DEFAULT_STACK]
    stacks += [found for found in map(stack, STACKS) if found not in stacks]
    project = render("postgresql")
    env = service_env()
    get = get_script()
    loads: dict[str, tuple[Load, str]] = {}
    with prepared(project, "postgresql", env), contextlib.ExitStack() as servers:
        for on in stacks:
            tag = "stacks." + re.sub(r"[^a-z0-9.]+", "-", on.name)
            app = servers.enter_context(serving(tag, "app.main:app", project, env, on=on))
            ceiling = servers.enter_context(
                serving(f"{tag}.ceiling", "ceiling_app:app", BENCH_DIR, base_env(), on=on)
            )
            token = bearer(admin_token(app))
            loads[f"{on.name}|ceiling_health_64"] = (
                Load(f"{ceiling.base}/health", 64, get),
                f"{tag}.ceiling.health_64",
            )
            loads[f"{on.name}|health_64"] = (
                Load(f"{app.base}/health", 64, get),
                f"{tag}.health_64",
            )
            loads[f"{on.name}|me_64"] = (
                Load(f"{app.base}/api/v1/users/me", 64, get, token),
                f"{tag}.me_64",
            )
        measured = interleaved(loads, ROUNDS)
    out: dict = {"default": DEFAULT_STACK.name, "stacks": {}}
    for key, figures in measured.items():
        name, _, what = key.partition("|")
        out["stacks"].setdefault(name, {})[what] = figures
    results["stacks"] = out


def rows(results: dict) -> list[list[str]]:
    stacks = results["stacks"]
    default = stacks["stacks"][stacks["default"]]
    found = []
    for name, figures in stacks["stacks"].items():
        for label, key, who in MEASURED:
            note = "the services' stack"
            if name != stacks["default"]:
                share = ratio(figures[key]["rps"], default[key]["rps"])
                note = f"{share:.2f} x the services' stack"
            found.append(row(f"{label} [{name}]", who, 1, "no", figures[key], note))
    return found


def targets(results: dict) -> list[dict]:
    """The services' stack (the rendered pins) is the fastest at /health, give or take 5%."""
    stacks = results["stacks"]
    found = stacks["stacks"]
    own = found[stacks["default"]]["health_64"]["rps"]
    best_name, best = max(
        ((name, figures["health_64"]["rps"]) for name, figures in found.items()),
        key=lambda item: item[1],
    )
    name = f"/health c64 req/s vs the fastest stack ({best_name})"
    return [target(stacks["default"], name, ratio(own, best), ">= 0.95")]


def configuration(results: dict) -> list[str]:
    return [
        f"stacks: postgresql, 1 worker, {results['config']['rounds']} alternating rounds over "
        "every stack (other uvloop versions and granian installed into build/bench/stacks/, "
        "first on PYTHONPATH; asyncio: uvicorn --loop asyncio)"
    ]


SCENARIO = Scenario(name="stacks", run=run, rows=rows, targets=targets, configuration=configuration)
