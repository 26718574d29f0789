"""addresses: the scale group's variant and workers against a storm from many clients at once.

64 connections of wrong-password logins for one account whose budget is spent, every request
from an address of its own (X-Forwarded-For, 10.0.0.0/8 in turn), run long enough for at least
ADDRESS_STORM_ADDRESSES (200,000) distinct addresses, its length set from the 429/s of a
warm-up run. /health at 64 connections alone, then during the storm's last seconds, when it has
sent most of its addresses; and the storm's addresses that have a count in Redis (only those
whose attempt was hashed, once the account's window frees a few: a refused login counts
nothing).
"""

import math
import secrets

from bench.config import SCALE_WORKERS, SECONDS, WARMUP, log
from bench.load import (
    Load,
    get_script,
    logins_from_distinct_addresses,
    measured_during,
    status_count,
)
from bench.report import Scenario, fmt, ratio, row, statuses_text, target
from bench.serving import prepared, serving
from bench.storms import (
    ATTACK_CONNECTIONS,
    LEGIT_NET,
    SETTINGS,
    account_limit,
    attack_stats,
    budget_probe,
    keys_deleted,
    redis_keys,
    redis_project,
    signup,
)

# At least this many distinct client addresses in one storm.
ADDRESS_STORM_ADDRESSES = 200_000


def run(results: dict) -> None:
    project, env, out = redis_project("addresses")
    name, prefix = f"{out['variant']}.w{SCALE_WORKERS}.addresses", out["redis"]["key_prefix"]
    victim, victim_password = "benchvictim", secrets.token_urlsafe(18)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    with (
        keys_deleted(out),
        prepared(project, "postgresql", env),
        serving(name, "app.main:app", project, env, workers=SCALE_WORKERS) as server,
    ):
        signup(server, victim, victim_password, f"{LEGIT_NET}.250")
        health = Load(f"{server.base}/health", 64, get_script())
        out["health_64"] = health.measure(f"{name}.health_64")
        out["budget_probe"] = budget_probe(server, victim, wrong)
        log(f"{name}: the account's budget spent: {out['budget_probe']}")

        def storm(net8: int) -> Load:
            script = logins_from_distinct_addresses(
                f"storm-{net8}", victim, wrong, net8, ATTACK_CONNECTIONS
            )
            return Load(f"{server.base}/api/v1/auth/login", ATTACK_CONNECTIONS, script, (), "30s")

        # A warm-up from other addresses (11.0.0.0/8) gives the rate that sets the length.
        warmup = storm(11).run(max(WARMUP, 2), f"{name}.storm.warmup")
        rate = max(status_count(warmup, 429) / warmup["seconds"], 1.0)
        # Long enough at that rate even if the storm got nothing while /health is loaded
        # beside it, with a margin for a machine that slows down.
        storm_seconds = math.ceil(1.2 * (ADDRESS_STORM_ADDRESSES / rate + WARMUP + SECONDS))
        log(f"{name}: {rate:.0f} 429/s in the warm-up: a storm of {storm_seconds} s")
        out["health_64_during_storm"], out["storm"] = measured_during(
            storm(10), health, f"{name}.health_during_storm", f"{name}.storm", storm_seconds
        )
        out["storm_seconds"] = storm_seconds
        # A count per storm address: only those whose attempt was hashed have one.
        out["storm_addresses_counted"] = redis_keys(
            prefix, under="limits:LIMITER/login_address/10."
        )
    attack_stats(out["storm"])
    # One address per request: as many distinct addresses as requests sent (wrk counts those
    # answered, and a connection's request in flight at the end is not).
    out["distinct_addresses"] = out["storm"]["requests"]
    during = out["health_64_during_storm"]
    during["p99_vs_alone"] = ratio(during["p99_ms"], out["health_64"]["p99_ms"])
    log(
        f"{name}: {out['distinct_addresses']} addresses, {out['storm']['rps_429']} 429/s, "
        f"/health p99 {during['p99_ms']} ms during vs {out['health_64']['p99_ms']} ms alone, "
        f"storm addresses with a count in Redis {out['storm_addresses_counted']}"
    )
    results["addresses"] = out


def rows(results: dict) -> list[list[str]]:
    found = results["addresses"]
    n, storm, during = found["workers"], found["storm"], found["health_64_during_storm"]
    pg = "postgresql"
    return [
        row("GET /health c64", pg, n, "yes", found["health_64"], ""),
        row(
            f"POST /auth/login wrong password c{ATTACK_CONNECTIONS}, an address per request, 429/s",
            pg,
            n,
            "yes",
            storm,
            f"{found['distinct_addresses']} addresses; " + statuses_text(storm),
            rps=storm["rps_429"],
            errors=storm["unexpected"],
        ),
        row(
            "GET /health c64 in the address storm's last seconds",
            pg,
            n,
            "yes",
            during,
            f"p99 {fmt(during['p99_vs_alone'], '.2f')} x alone",
        ),
    ]


def targets(results: dict) -> list[dict]:
    found = results["addresses"]
    v = f"{found['variant']} w{found['workers']}"
    # Only attempts that are hashed count their address: the account's budget in each window
    # the storm spans (some answered after wrk stopped counting).
    hashable = account_limit(found) * (math.ceil(found["storm_seconds"] / 60) + 1)
    counted = found["storm_addresses_counted"]
    return [
        target(
            v,
            "address storm: distinct client addresses",
            found["distinct_addresses"],
            f">= {ADDRESS_STORM_ADDRESSES}",
        ),
        target(
            v,
            "address storm answers other than 429/401 + transport errors",
            found["storm"]["unexpected"],
            "== 0",
        ),
        target(
            v,
            "address storm: addresses with a count in Redis",
            counted,
            f"<= the account's budget per minute of storm ({hashable})",
            counted <= hashable,
        ),
        target(
            v,
            "/health p99 in the address storm vs alone",
            found["health_64_during_storm"]["p99_vs_alone"],
            "<= 3.0",
        ),
    ]


def configuration(results: dict) -> list[str]:
    found = results["addresses"]
    return [
        f"addresses: postgresql + use_redis=yes (Redis {found['redis']['version']}, "
        f"REDIS_KEY_PREFIX={found['redis']['key_prefix']}), uvicorn --workers "
        f"{found['workers']}, default limits; storm = {ATTACK_CONNECTIONS} connections of "
        "wrong-password logins for one account whose budget is spent, X-Forwarded-For a new "
        f"address of 10.0.0.0/8 per request, at least {ADDRESS_STORM_ADDRESSES} of them; "
        "/health measured in its last seconds"
    ]


SCENARIO = Scenario(
    name="addresses",
    run=run,
    rows=rows,
    targets=targets,
    configuration=configuration,
    settings={**SETTINGS, "address_storm_addresses": ADDRESS_STORM_ADDRESSES},
)
