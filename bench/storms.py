"""What the storm groups (scale, addresses) share: the PostgreSQL + Redis variant with its limits
in Redis, accounts signed up from given addresses, an account's login budget spent, and the
storm's answers counted.
"""

import contextlib
import secrets
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.config import HOST, REDIS_URL, SCALE_WORKERS, log
from bench.load import other_statuses, status_count
from bench.serving import Server, env_example, render, service_env

# Wrong-password logins against one account at this many connections, each request from an
# address of its own (X-Forwarded-For) in ATTACK_NET; the accounts are signed up from LEGIT_NET.
ATTACK_CONNECTIONS = 64
ATTACK_NET = "203.0.113"
LEGIT_NET = "198.51.100"
BUDGET_PROBE_ATTEMPTS = 12
SETTINGS = {
    "attack_connections": ATTACK_CONNECTIONS,
    "attack_addresses": f"{ATTACK_NET}.1-254, one per request",
}


def redis_client():
    import redis  # only a run that speaks to Redis needs it

    if urllib.parse.urlsplit(REDIS_URL).hostname != HOST:
        raise ValueError(f"refusing Redis at {REDIS_URL}: the bench uses {HOST} only")
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def redis_keys(prefix: str, *, under: str = "", delete: bool = False, cap: int = 100_000) -> int:
    """How many keys start with `prefix:under` (at most `cap` are looked at); deletes them on
    request.
    """
    client = redis_client()
    try:
        keys = []
        for key in client.scan_iter(match=f"{prefix}:{under}*", count=1000):
            keys.append(key)
            if len(keys) >= cap:
                break
        if delete:
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


def redis_version(group: str) -> str | None:
    client = redis_client()
    try:
        client.ping()
        return client.info("server").get("redis_version")
    except Exception as exc:
        raise RuntimeError(f"the {group} scenarios need Redis at {REDIS_URL}: {exc}") from exc
    finally:
        client.close()


def redis_project(group: str) -> tuple[Path, dict[str, str], dict]:
    """The PostgreSQL + Redis variant rendered, the environment of its servers (the limits under
    a key prefix of their own) and the figures every such group reports.
    """
    version_found = redis_version(group)
    project = render("postgresql", redis=True)
    prefix = f"bench-{secrets.token_hex(6)}"
    env = service_env() | {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix}
    config = env_example(project)
    out: dict = {
        "variant": "postgresql+redis",
        "workers": SCALE_WORKERS,
        "redis": {"url": REDIS_URL, "version": version_found, "key_prefix": prefix},
        "rate_limits": {k: v for k, v in config.items() if k.startswith("RATE_LIMIT_")},
    }
    return project, env, out


@contextlib.contextmanager
def keys_deleted(out: dict) -> Iterator[None]:
    """On the way out, the Redis keys under the group's prefix deleted and counted in `out`."""
    prefix = out["redis"]["key_prefix"]
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            out["redis_keys_written"] = redis_keys(prefix, delete=True)
            log(f"deleted {out['redis_keys_written']} Redis keys under {prefix}:")


def signup(server: Server, username: str, password: str, address: str) -> None:
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "first_name": "Bench",
        "last_name": "User",
        "password": password,
    }
    response = httpx.post(
        f"{server.base}/api/v1/auth/signup",
        json=body,
        headers={"X-Forwarded-For": address},
        timeout=60,
    )
    if response.status_code != 201:
        raise RuntimeError(
            f"signup on {server.name} answered {response.status_code}: {response.text[:300]!r}"
        )


def budget_probe(server: Server, username: str, password: str) -> dict[str, int]:
    """BUDGET_PROBE_ATTEMPTS logins one after another, each over a new connection (which the
    workers take in turn) and from an address of its own: how many were hashed (401) or
    refused (429).
    """
    form = {"username": username, "password": password}
    statuses: Counter[int] = Counter()
    for i in range(BUDGET_PROBE_ATTEMPTS):
        headers = {"X-Forwarded-For": f"{ATTACK_NET}.{i + 1}", "Connection": "close"}
        response = httpx.post(
            f"{server.base}/api/v1/auth/login", data=form, headers=headers, timeout=60
        )
        statuses[response.status_code] += 1
    return {str(code): n for code, n in sorted(statuses.items())}


def account_limit(found: dict) -> int:
    """The failed logins an account may make a window (RATE_LIMIT_LOGIN_ACCOUNT's count)."""
    return int(found["rate_limits"].get("RATE_LIMIT_LOGIN_ACCOUNT", "5/").split("/")[0])


def attack_stats(result: dict) -> None:
    """429s per second, and the answers that are neither 429 nor 401 (the wrong password)."""
    result["rps_429"] = round(status_count(result, 429) / result["seconds"], 1)
    result["unexpected"] = other_statuses(result, 401, 429)
