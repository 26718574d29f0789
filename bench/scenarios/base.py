"""base: each variant of BENCH_VARIANTS (SQLite, PostgreSQL) against the ceiling and the limit
app, a login storm, a soak; then the two variants side by side.

Renders each variant into build/bench/, migrates it (a throwaway PostgreSQL database, dropped at
the end) and creates a superuser. For each, three servers side by side: the service, the same at
LOG_LEVEL=WARNING (no request log) and the limit app, measured in alternating rounds
(BENCH_ROUNDS): /health at 64 connections (service and WARNING), /users/me at 64 (all three)
and at 256 (service and limit app). Then on the service alone: a login storm (correct
password), /health during the storm, RSS idle and during the storm, and a mixed-traffic soak
(bench/soak.py). The soak signs up and refreshes from 127.0.0.1 hundreds of times a minute, so
these servers run with RATE_LIMIT_SIGNUP and RATE_LIMIT_REFRESH raised (SOAK_RATE_LIMITS); the
login limits keep their defaults (successful logins use up nothing). Last, both variants'
services side by side, /users/me at 64 connections in alternating rounds: SQLite against
PostgreSQL under the same machine load (the variants' own runs are minutes apart).
"""

import contextlib
import json
import subprocess
import time

from bench.config import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    BENCH_DIR,
    PROFILE,
    PYTHON,
    ROUNDS,
    SECONDS,
    SOAK_RSS_INTERVAL,
    SOAK_SECONDS,
    VARIANTS,
    WARMUP,
    log,
)
from bench.load import (
    STORM_LEAD_SECONDS,
    Load,
    RssSampler,
    bearer,
    finish,
    get_script,
    interleaved,
    login_script,
    proc_status,
)
from bench.pyspy import profile_me
from bench.report import Scenario, ratio
from bench.scenarios.base_report import configuration, details, headline, rows, targets
from bench.serving import (
    Server,
    admin_token,
    base_env,
    pg_connections,
    pool,
    prepared,
    render,
    service_env,
    serving,
)

# Compared side by side when both are among the variants.
DATABASES = ("sqlite", "postgresql")
STORM_CONNECTIONS = 16
# The soak signs up and refreshes from 127.0.0.1 far more often than the default limits (10 and
# 30 a minute per address) allow.
SOAK_RATE_LIMITS = {"RATE_LIMIT_SIGNUP": "100000/minute", "RATE_LIMIT_REFRESH": "100000/minute"}
STORM_RSS_INTERVAL = 0.2
ME = "/api/v1/users/me"


def run(results: dict) -> None:
    results["ceiling"] = ceiling()
    for variant in VARIANTS:
        results[variant] = bench_variant(variant)
    if set(DATABASES) <= set(VARIANTS):
        results["databases"] = side_by_side()


def ceiling() -> dict:
    health = get_script()
    with serving("ceiling", "ceiling_app:app", BENCH_DIR, base_env()) as server:
        url = f"{server.base}/health"
        return {
            "health_64": Load(url, 64, health).measure("ceiling.health_64"),
            "health_256": Load(url, 256, health).measure("ceiling.health_256"),
            "rss_mb": proc_status(server.pid),
        }


def limit_env(env: dict[str, str]) -> dict[str, str]:
    return base_env() | {k: env[k] for k in ("DATABASE_URL", "SECRET_KEY")}


def bench_variant(variant: str) -> dict:
    """The variant at its defaults, next to the same at LOG_LEVEL=WARNING and to the limit app,
    all three on its database; the storm and the soak on the first alone.
    """
    project = render(variant)
    env = service_env() | SOAK_RATE_LIMITS
    result: dict = {}
    with (
        prepared(project, variant, env) as database,
        serving(variant, "app.main:app", project, env) as server,
    ):
        result = {"rss_idle_mb": proc_status(server.pid)}
        log(f"{variant}: idle RSS {result['rss_idle_mb']}")
        quiet_env = env | {"LOG_LEVEL": "WARNING"}
        with (
            serving(f"{variant}.warning", "app.main:app", project, quiet_env) as quiet,
            serving(f"{variant}.limit", "limit_app:app", BENCH_DIR, limit_env(env)) as limit,
        ):
            result.update(compare(server, quiet, limit, variant))
        result.update(load_service(server, variant))
        result["health_64_during_storm"]["p99_vs_alone"] = ratio(
            result["health_64_during_storm"]["p99_ms"], result["health_64"]["p99_ms"]
        )
        if variant == "postgresql":
            time.sleep(2)
            found = pool(project)
            result["pg_connections_after_soak"] = {
                "count": pg_connections(database),
                "pool_size": found["size"],
                "max_overflow": found["max_overflow"],
            }
            log(f"server connections after the soak: {result['pg_connections_after_soak']}")
        if variant in PROFILE:
            result["profile"] = profile_me(server, variant)
    return result


def side_by_side() -> dict:
    """/users/me at 64 connections on the SQLite and the PostgreSQL variant, served side by side
    and measured in alternating rounds: the embedded default against the server database under
    the same machine load (the variants' own groups run minutes apart).
    """
    loads: dict[str, tuple[Load, str]] = {}
    with contextlib.ExitStack() as stack:
        for variant in DATABASES:
            project = render(variant)
            env = service_env()
            stack.enter_context(prepared(project, variant, env))
            server = stack.enter_context(
                serving(f"{variant}.side_by_side", "app.main:app", project, env)
            )
            loads[variant] = (
                Load(f"{server.base}{ME}", 64, get_script(), bearer(admin_token(server))),
                f"{variant}.side_by_side.me_64",
            )
        return interleaved(loads, ROUNDS)


def compare(server: Server, quiet: Server, limit: Server, variant: str) -> dict:
    """The request log's cost (/health and /users/me at the defaults and at WARNING) and
    /users/me against the limit app, in alternating rounds.
    """
    get = get_script()
    token = bearer(admin_token(server))

    def me(target: Server, conns: int) -> Load:
        return Load(f"{target.base}{ME}", conns, get, token)

    health = {
        "health_64": (Load(f"{server.base}/health", 64, get), f"{variant}.health_64"),
        "health_64_warning": (
            Load(f"{quiet.base}/health", 64, get),
            f"{variant}.warning.health_64",
        ),
    }
    me_64 = {
        "me_64": (me(server, 64), f"{variant}.me_64"),
        "me_64_limit": (me(limit, 64), f"{variant}.limit.me_64"),
        "me_64_warning": (me(quiet, 64), f"{variant}.warning.me_64"),
    }
    me_256 = {
        "me_256": (me(server, 256), f"{variant}.me_256"),
        "me_256_limit": (me(limit, 256), f"{variant}.limit.me_256"),
    }
    return interleaved(health, ROUNDS) | interleaved(me_64, ROUNDS) | interleaved(me_256, 1)


def load_service(server: Server, variant: str) -> dict:
    """The login storm, /health during it, RSS, and the soak, on the service alone."""
    script = login_script(ADMIN_USER, ADMIN_PASSWORD)
    health = Load(f"{server.base}/health", 64, get_script())
    storm = Load(f"{server.base}/api/v1/auth/login", STORM_CONNECTIONS, script, (), "60s")
    out: dict = {}
    # The login storm alone; the warm-up uses 2 connections, then the queue is drained.
    Load(storm.url, 2, script, (), "60s").run(max(WARMUP, 2), f"{variant}.login.warmup")
    admin_token(server)
    with RssSampler(server.pid, STORM_RSS_INTERVAL) as sampler:
        out["login_16"] = storm.run(SECONDS, f"{variant}.login_16")
        admin_token(server)  # returns once every queued hash is done
    out["login_16"]["rss_peak_mb"] = sampler.peak
    log(f"{variant}.login_16: {out['login_16']}")

    # /health at 64 connections while the storm runs (two wrk processes at once).
    lead = STORM_LEAD_SECONDS
    storm_seconds = lead + WARMUP + SECONDS + lead
    with RssSampler(server.pid, STORM_RSS_INTERVAL) as sampler2:
        storm_proc = storm.start(storm_seconds)
        try:
            time.sleep(lead)
            if WARMUP > 0:
                health.run(WARMUP, f"{variant}.health_during_storm.warmup")
            out["health_64_during_storm"] = health.run(SECONDS, f"{variant}.health_during_storm")
        finally:
            out["login_16_with_health"] = finish(storm_proc, storm_seconds, f"{variant}.storm2")
        admin_token(server)
    log(f"{variant}.health_during_storm: {out['health_64_during_storm']}")
    out["rss_storm"] = {
        "peak_sampled_mb": max(filter(None, [sampler.peak, sampler2.peak]), default=None),
        "after": proc_status(server.pid),
    }
    log(f"{variant}: storm RSS {out['rss_storm']}")
    out["soak"] = soak(server, variant)
    out["rss_end"] = proc_status(server.pid)
    return out


def soak(server: Server, variant: str) -> dict:
    log(f"{variant}: soak for {SOAK_SECONDS}s")
    cmd = [str(PYTHON), str(BENCH_DIR / "soak.py"), server.base, str(SOAK_SECONDS)]
    cmd += [ADMIN_USER, ADMIN_PASSWORD]
    with RssSampler(server.pid, SOAK_RSS_INTERVAL) as sampler:
        proc = subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, timeout=SOAK_SECONDS + 120, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"soak client failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rss"] = sampler.trend()
    log(
        f"{variant}.soak: {result['requests']} requests, 5xx {result['status_5xx']}, "
        f"transport errors {result['transport_errors']}, RSS {result['rss']}"
    )
    return result


SCENARIO = Scenario(
    name="base",
    run=run,
    rows=rows,
    targets=targets,
    configuration=configuration,
    details=details,
    headline=headline,
    settings={
        "storm_connections": STORM_CONNECTIONS,
        "base_rate_limits_for_the_soak": SOAK_RATE_LIMITS,
    },
)
