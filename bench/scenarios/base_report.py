"""The base group's rows, targets, configuration and RSS/soak table (bench/scenarios/base.py
measures them).
"""

from bench.report import Table, fmt, ratio, row, statuses_text, target, times


def variants(results: dict) -> list[str]:
    return [v for v in results["config"]["variants"] if v in results]


def rows(results: dict) -> list[list[str]]:
    ceiling = results["ceiling"]
    ceiling_64 = ceiling["health_64"]["rps"]
    bcrypt_ps = results["bcrypt"]["per_second"]
    found = [
        row("GET /health c64", "ceiling", 1, "-", ceiling["health_64"], ""),
        row("GET /health c256", "ceiling", 1, "-", ceiling["health_256"], ""),
    ]
    for variant in variants(results):
        r = results[variant]
        limit, quiet = f"{variant} limit app", f"{variant} LOG_LEVEL=WARNING"
        h64, hq = r["health_64"], r["health_64_warning"]
        me, me_limit, me_quiet = r["me_64"], r["me_64_limit"], r["me_64_warning"]
        me_256, during = r["me_256"], r["health_64_during_storm"]
        specs = [
            (
                "GET /health c64",
                variant,
                h64,
                f"{times(h64['rps'], hq['rps'])} WARNING; {times(h64['rps'], ceiling_64)} ceiling",
            ),
            ("GET /health c64", quiet, hq, f"{times(hq['rps'], ceiling_64)} ceiling"),
            (
                "GET /users/me c64",
                variant,
                me,
                f"{times(me['rps'], me_limit['rps'])} limit app, "
                f"p99 {times(me['p99_ms'], me_limit['p99_ms'])}"
                f"; {times(me['rps'], ceiling_64)} ceiling",
            ),
            ("GET /users/me c64", limit, me_limit, ""),
            (
                "GET /users/me c64",
                quiet,
                me_quiet,
                f"{times(me_quiet['rps'], me_limit['rps'])} limit app",
            ),
            (
                "GET /users/me c256",
                variant,
                me_256,
                f"{times(me_256['rps'], me['rps'])} its c64; "
                f"{times(me_256['rps'], r['me_256_limit']['rps'])} limit app",
            ),
            ("GET /users/me c256", limit, r["me_256_limit"], ""),
            (
                "POST /auth/login c16",
                variant,
                r["login_16"],
                f"{times(r['login_16']['rps'], bcrypt_ps)} 1-core bcrypt; "
                + statuses_text(r["login_16"]),
            ),
            (
                "GET /health c64 during storm",
                variant,
                during,
                f"p99 {times(during['p99_ms'], h64['p99_ms'])} alone",
            ),
        ]
        found += [row(label, who, 1, "no", figures, note) for label, who, figures, note in specs]
    side_by_side = results.get("databases", {})
    for variant, figures in side_by_side.items():
        note = ""
        if variant == "sqlite":
            note = f"{times(figures['rps'], side_by_side['postgresql']['rps'])} postgresql"
        found.append(row("GET /users/me c64 side by side", variant, 1, "no", figures, note))
    return found


def targets(results: dict) -> list[dict]:
    ceiling = results["ceiling"]["health_64"]["rps"]
    bcrypt_ps = results["bcrypt"]["per_second"]
    found = []
    for variant in variants(results):
        r = results[variant]
        me64, me256, limit = r["me_64"], r["me_256"], r["me_64_limit"]
        soak = r["soak"]
        storm_errors = r["login_16"]["errors"] + r["login_16_with_health"]["errors"]
        checks = [
            (
                "/health c64 req/s, request log on (INFO) vs off (WARNING)",
                ratio(r["health_64"]["rps"], r["health_64_warning"]["rps"]),
                ">= 0.85",
            ),
            ("/users/me c64 req/s vs limit app", ratio(me64["rps"], limit["rps"]), ">= 0.70"),
            ("/users/me c64 p99 vs limit app", ratio(me64["p99_ms"], limit["p99_ms"]), "<= 1.50"),
        ]
        if variant == "sqlite" and "databases" in results:
            side_by_side = results["databases"]
            checks.append(
                (
                    "/users/me c64 req/s vs postgresql's, side by side",
                    ratio(side_by_side["sqlite"]["rps"], side_by_side["postgresql"]["rps"]),
                    ">= 1.00",
                )
            )
        checks += [
            ("/users/me c64 req/s vs ceiling", ratio(me64["rps"], ceiling), ">= 0.20"),
            ("/users/me c64 p99 ms", me64["p99_ms"], "<= 100"),
            ("/users/me c256 errors", me256["errors"], "== 0"),
            ("/users/me c256 vs c64 req/s", ratio(me256["rps"], me64["rps"]), ">= 0.80"),
            ("/health c64 req/s vs ceiling", ratio(r["health_64"]["rps"], ceiling), ">= 0.70"),
            ("login storm (correct password) non-200 + transport errors", storm_errors, "== 0"),
            (
                "/health p99 during storm vs alone",
                r["health_64_during_storm"]["p99_vs_alone"],
                "<= 3.0",
            ),
            (
                "login req/s vs 1-core bcrypt rate",
                ratio(r["login_16"]["rps"], bcrypt_ps),
                ">= 0.80",
            ),
            ("RSS during storm MB (peak sampled)", r["rss_storm"]["peak_sampled_mb"], "<= 150"),
            ("RSS idle MB", r["rss_idle_mb"]["VmRSS"], "<= 100"),
            ("soak 5xx + transport errors", soak["status_5xx"] + soak["transport_errors"], "== 0"),
            ("soak 429s (signup/refresh limits raised)", soak.get("status_429", 0), "== 0"),
            ("soak RSS growth 2nd half MB", soak["rss"].get("second_half_growth_mb"), "<= 5"),
        ]
        found += [target(variant, name, value, limit) for name, value, limit in checks]
        conns = r.get("pg_connections_after_soak")
        if conns:
            found.append(
                target(
                    variant,
                    "server connections after soak",
                    conns["count"],
                    f"<= pool {conns['pool_size']}",
                    conns["count"] <= conns["pool_size"],
                )
            )
    return found


def configuration(results: dict) -> list[str]:
    raised = ", ".join(
        f"{k}={v}" for k, v in results["config"]["base_rate_limits_for_the_soak"].items()
    )
    return [
        f"base: 1 worker, redis no; {results['config']['rounds']} alternating rounds of the "
        "service, the same at LOG_LEVEL=WARNING and the limit app; for the soak (sign-ups and "
        f"refreshes from 127.0.0.1) {raised}; login limits at their defaults"
        + ("; then both variants side by side" if "databases" in results else "")
    ]


def details(results: dict) -> list[Table | str]:
    """RSS idle, in the storm and over the soak; the soak's answers; PostgreSQL's connections."""
    found = []
    for variant in variants(results):
        r = results[variant]
        soak, conns = r["soak"], r.get("pg_connections_after_soak")
        trend = soak["rss"]
        found.append(
            [
                variant,
                fmt(r["rss_idle_mb"]["VmRSS"]),
                fmt(r["rss_storm"]["peak_sampled_mb"]),
                fmt(r["rss_storm"]["after"]["VmHWM"]),
                f"{trend.get('first_mb')}/{trend.get('last_mb')}/{trend.get('max_mb')}",
                fmt(trend.get("slope_mb_per_min")),
                f"{soak['requests']}",
                f"{soak['status_5xx']}",
                f"{soak.get('status_429', 0)}",
                f"{soak['transport_errors']}",
                f"{conns['count']}/{conns['pool_size']}" if conns else "-",
            ]
        )
    if not found:
        return []
    header = ["variant", "RSS idle", "RSS storm peak", "HWM after storm"]
    header += ["soak RSS first/last/max", "MB/min", "soak req", "5xx", "429", "transport err"]
    return [Table([*header, "pg conns/pool"], found)]


def headline(results: dict) -> list[str]:
    found = [
        f"GET /users/me at 64 connections, {variant}: "
        f"{times(results[variant]['me_64']['rps'], results[variant]['me_64_limit']['rps'])} "
        "the limit app's req/s (the least code that does its job, same stack)"
        for variant in variants(results)
    ]
    side_by_side = results.get("databases")
    if side_by_side:
        found.append(
            "GET /users/me at 64 connections, SQLite side by side with PostgreSQL: "
            f"{times(side_by_side['sqlite']['rps'], side_by_side['postgresql']['rps'])} its req/s"
        )
    return found
