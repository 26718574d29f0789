"""scale: the PostgreSQL variant with use_redis=yes on 1 worker and on N (BENCH_SCALE_WORKERS),
and a wrong-password storm against one account with the limits shared in Redis.

Rate limits are shared through Redis at BENCH_REDIS_URL under a random REDIS_KEY_PREFIX, every
limit at its default. /users/me at 64 connections served by 1 worker, then by N
(WEB_CONCURRENCY), in alternating rounds (BENCH_SCALE_ROUNDS); on the N-worker server, /health
alone, a 64-connection storm of wrong-password logins against one account (each request from
its own X-Forwarded-For address, so the per-account limit is the one that answers 429), /health
during that storm, and correct-password logins of another account from other addresses during
that storm (a few connections, paced below one core's bcrypt rate). uvicorn trusts
X-Forwarded-For from 127.0.0.1 (the Dockerfile's FORWARDED_ALLOW_IPS), which lets wrk on
loopback pose as many clients.
"""

import secrets
import time

from bench.config import SCALE_ROUNDS, SCALE_WORKERS, SECONDS, WARMUP, log
from bench.load import (
    STORM_LEAD_SECONDS,
    Load,
    bearer,
    finish,
    get_script,
    interleaved,
    logins_from_addresses,
    measured_during,
    other_statuses,
    status_count,
)
from bench.report import Scenario, fmt, ratio, row, statuses_text, target, times
from bench.serving import Server, admin_token, pg_connections, pool, prepared, serving
from bench.storms import (
    ATTACK_CONNECTIONS,
    ATTACK_NET,
    BUDGET_PROBE_ATTEMPTS,
    LEGIT_NET,
    SETTINGS,
    account_limit,
    attack_stats,
    budget_probe,
    keys_deleted,
    redis_project,
    signup,
)

# Correct-password logins of another account during the storm, a few connections each pausing
# between logins, so that they stay below one core's bcrypt rate.
LEGIT_CONNECTIONS = 3
LEGIT_PAUSE_MS = 1000
LEGIT_P99_LIMIT_MS = 2000
ME = "/api/v1/users/me"


def run(results: dict) -> None:
    project, env, out = redis_project("scale")
    label = out["variant"]
    out["pool"] = pool(project)
    with keys_deleted(out), prepared(project, "postgresql", env) as database:
        # /users/me at 64 connections, one worker and SCALE_WORKERS workers served side by side
        # (the idle one costs nothing) and measured in turn, SCALE_ROUNDS times.
        name = f"{label}.w{SCALE_WORKERS}"
        with serving(name, "app.main:app", project, env, workers=SCALE_WORKERS) as server:
            with serving(f"{label}.w1", "app.main:app", project, env) as single:
                loads = {}
                for key, target_server, tag in (
                    ("w1", single, f"{label}.w1"),
                    ("wn", server, name),
                ):
                    token = bearer(admin_token(target_server))
                    loads[f"me_64_{key}"] = (
                        Load(f"{target_server.base}{ME}", 64, get_script(), token),
                        f"{tag}.me_64",
                    )
                out.update(interleaved(loads, SCALE_ROUNDS))
            out["pg_connections_after_me"] = pg_connections(database)
            log(f"{name}: server connections after /users/me {out['pg_connections_after_me']}")
            out.update(attack(server, name))
        out["pg_connections_end"] = pg_connections(database)
    out["me_64_wn"]["vs_w1"] = ratio(out["me_64_wn"]["rps"], out["me_64_w1"]["rps"])
    results["scale"] = out


def attack(server: Server, name: str) -> dict:
    """The 429 storm, /health and logins from other addresses during it, on one server."""
    victim, victim_password = "benchvictim", secrets.token_urlsafe(18)
    user, user_password = "benchuser", secrets.token_urlsafe(18)
    signup(server, victim, victim_password, f"{LEGIT_NET}.250")
    signup(server, user, user_password, f"{LEGIT_NET}.251")
    wrong = "wrong-" + secrets.token_urlsafe(12)
    login_url = f"{server.base}/api/v1/auth/login"
    attack_script = logins_from_addresses("attack", victim, wrong, ATTACK_NET)
    storm = Load(login_url, ATTACK_CONNECTIONS, attack_script, (), "30s")
    legit_script = logins_from_addresses("legit", user, user_password, LEGIT_NET, LEGIT_PAUSE_MS)
    legit = Load(login_url, LEGIT_CONNECTIONS, legit_script, (), "30s")
    health = Load(f"{server.base}/health", 64, get_script())
    out: dict = {}
    out["health_64"] = health.measure(f"{name}.health_64")
    # The account's budget, spent one attempt at a time over new connections (which the
    # workers take in turn): with the counts shared, exactly the limit is hashed (401), then
    # 429; with a count per worker, up to the limit per worker would be.
    started = time.monotonic()
    out["budget_probe"] = budget_probe(server, victim, wrong)
    log(f"{name}: {BUDGET_PROBE_ATTEMPTS} sequential wrong passwords: {out['budget_probe']}")
    runs = ["attack_64", "attack_with_health", "attack_with_legit"]
    if WARMUP > 0:
        out["attack_warmup"] = storm.run(WARMUP, f"{name}.attack_64.warmup")
        attack_stats(out["attack_warmup"])
        runs.append("attack_warmup")
    out["attack_64"] = storm.run(SECONDS, f"{name}.attack_64")
    attack_stats(out["attack_64"])
    log(
        f"{name}.attack_64: {out['attack_64']['rps_429']} 429/s, p50 "
        f"{out['attack_64']['p50_ms']} ms, p99 {out['attack_64']['p99_ms']} ms, "
        f"statuses {out['attack_64']['statuses']}"
    )

    # /health at 64 connections while the storm runs (two wrk processes at once).
    out["health_64_during_attack"], out["attack_with_health"] = measured_during(
        storm, health, f"{name}.health_during_attack", f"{name}.attack2"
    )
    attack_stats(out["attack_with_health"])
    out["health_64_during_attack"]["p99_vs_alone"] = ratio(
        out["health_64_during_attack"]["p99_ms"], out["health_64"]["p99_ms"]
    )
    log(f"{name}.health_during_attack: {out['health_64_during_attack']}")

    # Legitimate logins from other addresses while the storm runs.
    lead = STORM_LEAD_SECONDS
    legit_seconds = max(2 * SECONDS, 6)
    storm_seconds = lead + legit_seconds + lead
    storm_proc = storm.start(storm_seconds)
    try:
        time.sleep(lead)
        out["legit_during_attack"] = legit.run(legit_seconds, f"{name}.legit_during_attack")
    finally:
        out["attack_with_legit"] = finish(storm_proc, storm_seconds, f"{name}.attack3")
    attack_stats(out["attack_with_legit"])
    lg = out["legit_during_attack"]
    lg["ok"] = status_count(lg, 200)
    lg["failed"] = other_statuses(lg, 200)
    log(f"{name}.legit_during_attack: {lg}")
    # With the counts shared, the account's budget holds for every worker together: at most
    # the limit per window, plus one attempt per further worker that passed the check while
    # another worker's hash was running.
    out["attack_hashed"] = {
        "wrong_password_401": sum(status_count(out[k], 401) for k in runs),
        "storm_seconds": round(time.monotonic() - started, 1),
    }
    log(f"{name}: wrong passwords hashed during the storms {out['attack_hashed']}")
    return out


def rows(results: dict) -> list[list[str]]:
    scale = results["scale"]
    n, health, attack_run = scale["workers"], scale["health_64"], scale["attack_64"]
    during, legit = scale["health_64_during_attack"], scale["legit_during_attack"]
    pg = "postgresql"
    return [
        row("GET /users/me c64", pg, 1, "yes", scale["me_64_w1"], ""),
        row(
            "GET /users/me c64",
            pg,
            n,
            "yes",
            scale["me_64_wn"],
            f"{scale['me_64_wn']['vs_w1']:.2f} x 1 worker req/s",
        ),
        row("GET /health c64", pg, n, "yes", health, ""),
        row(
            f"POST /auth/login wrong password c{ATTACK_CONNECTIONS}, 429/s",
            pg,
            n,
            "yes",
            attack_run,
            f"{times(attack_run['rps_429'], health['rps'])} /health req/s; "
            + statuses_text(attack_run),
            rps=attack_run["rps_429"],
            errors=attack_run["unexpected"],
        ),
        row(
            "GET /health c64 during 429 storm",
            pg,
            n,
            "yes",
            during,
            f"p99 {during['p99_vs_alone']:.2f} x alone",
        ),
        row(
            f"POST /auth/login other addresses c{LEGIT_CONNECTIONS} during 429 storm",
            pg,
            n,
            "yes",
            legit,
            f"{legit['ok']} of {legit['requests']} logged in",
            errors=legit["failed"],
        ),
    ]


def targets(results: dict) -> list[dict]:
    scale = results["scale"]
    v = f"{scale['variant']} w{scale['workers']}"
    me_errors = scale["me_64_w1"]["errors"] + scale["me_64_wn"]["errors"]
    probe, limit = scale["budget_probe"], account_limit(scale)
    hashed, refused = probe.get("401", 0), probe.get("429", 0)
    unexpected = sum(
        scale[k]["unexpected"]
        for k in ("attack_64", "attack_with_health", "attack_with_legit")
        if k in scale
    )
    legit = scale["legit_during_attack"]
    return [
        target(
            v,
            f"/users/me c64 req/s, {scale['workers']} workers vs 1",
            scale["me_64_wn"]["vs_w1"],
            ">= 1.30",
        ),
        target(v, "/users/me c64 errors, 1 and N workers", me_errors, "== 0"),
        target(
            v,
            "wrong-password storm 429/s vs /health req/s alone",
            ratio(scale["attack_64"]["rps_429"], scale["health_64"]["rps"]),
            ">= 0.50",
        ),
        target(
            v,
            f"{BUDGET_PROBE_ATTEMPTS} sequential wrong passwords: hashed (401) / refused (429)",
            f"{hashed}/{refused}",
            f"{limit}/{BUDGET_PROBE_ATTEMPTS - limit} (shared)",
            hashed == limit and refused == BUDGET_PROBE_ATTEMPTS - limit,
        ),
        target(v, "storm answers other than 429/401 + transport errors", unexpected, "== 0"),
        target(
            v,
            "/health p99 during 429 storm vs alone",
            scale["health_64_during_attack"]["p99_vs_alone"],
            "<= 3.0",
        ),
        target(
            v,
            "logins from other addresses during storm: failed",
            legit["failed"],
            f"== 0 (of {legit['requests']})",
            legit["failed"] == 0 and legit["ok"] > 0,
        ),
        target(
            v,
            "logins from other addresses during storm p99 ms",
            legit["p99_ms"],
            f"<= {LEGIT_P99_LIMIT_MS}",
        ),
    ]


def configuration(results: dict) -> list[str]:
    scale = results["scale"]
    limits = ", ".join(f"{k}={v}" for k, v in scale["rate_limits"].items())
    return [
        f"scale: postgresql + use_redis=yes (Redis {scale['redis']['version']} at "
        f"{scale['redis']['url']}, REDIS_KEY_PREFIX={scale['redis']['key_prefix']}), "
        f"uvicorn --workers 1 vs {scale['workers']} ({results['config']['scale_rounds']} "
        f"alternating rounds), pool {scale['pool']['size']} + "
        f"overflow {scale['pool']['max_overflow']} per worker; default limits: {limits}",
        f"scale: storm = {ATTACK_CONNECTIONS} connections of wrong-password logins for one "
        f"account, X-Forwarded-For {ATTACK_NET}.1-254 (one per request); other logins = "
        f"{LEGIT_CONNECTIONS} connections, another account's correct password, "
        f"X-Forwarded-For {LEGIT_NET}.1-254, {LEGIT_PAUSE_MS} ms pause between requests",
    ]


def details(results: dict) -> list[str]:
    scale = results["scale"]
    hashed, pool_each = (
        scale["attack_hashed"],
        scale["pool"]["size"] + scale["pool"]["max_overflow"],
    )
    return [
        f"scale: {BUDGET_PROBE_ATTEMPTS} sequential wrong passwords for the account on "
        f"{scale['workers']} workers: {statuses_text({'statuses': scale['budget_probe']})} "
        f"(RATE_LIMIT_LOGIN_ACCOUNT={scale['rate_limits'].get('RATE_LIMIT_LOGIN_ACCOUNT')},"
        f" shared); 401s among the storms' answers over the next "
        f"{hashed['storm_seconds']} s: {hashed['wrong_password_401']}; "
        f"PostgreSQL connections after /users/me: {scale['pg_connections_after_me']} "
        f"(at most {scale['workers']} x {pool_each}); Redis keys written: "
        f"{scale.get('redis_keys_written')}"
    ]


def headline(results: dict) -> list[str]:
    scale = results["scale"]
    return [
        f"GET /users/me at 64 connections, {scale['workers']} workers against 1 "
        f"(PostgreSQL + Redis): {fmt(scale['me_64_wn']['vs_w1'], '.2f')} x its req/s"
    ]


SCENARIO = Scenario(
    name="scale",
    run=run,
    rows=rows,
    targets=targets,
    configuration=configuration,
    details=details,
    headline=headline,
    settings={
        **SETTINGS,
        "legit_connections": LEGIT_CONNECTIONS,
        "legit_pause_ms": LEGIT_PAUSE_MS,
        "legit_addresses": f"{LEGIT_NET}.1-254, one per request",
    },
)
