"""Mixed-traffic soak client for `make bench` (run in its own process by the base group).

Light workers loop over `GET /users/me`, `POST /auth/refresh` (each keeps its own rotating
refresh token) and the admin list `GET /users`; heavy workers loop over sign-up, login,
refresh and `GET /users/me` for fresh users (the bcrypt-bound part). Every worker stops at the
deadline; the result (counts, statuses, 5xx, 429s, transport errors, p50/p99 per operation)
is one JSON object on stdout. Every request comes from 127.0.0.1, so the server must run with
sign-up and refresh limits far above their defaults (bench/scenarios/base.py raises them): a
429 here means a limit the soak was not meant to measure.

Usage: python bench/soak.py BASE_URL SECONDS ADMIN_USERNAME ADMIN_PASSWORD [LIGHT] [HEAVY]
"""

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from urllib.parse import urlsplit

import httpx

REQUEST_TIMEOUT = 30.0
ALLOWED_HOSTS = {"127.0.0.1"}


class Stats:
    def __init__(self) -> None:
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.transport_errors: Counter[str] = Counter()

    async def call(self, op: str, client: httpx.AsyncClient, method: str, url: str, **kw):
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.transport_errors[f"{op}: {type(exc).__name__}"] += 1
            return None
        self.latencies[op].append(time.perf_counter() - started)
        self.statuses[op][response.status_code] += 1
        return response

    def summary(self) -> dict[str, object]:
        ops = {}
        for op, counts in sorted(self.statuses.items()):
            lat = sorted(self.latencies[op])
            ops[op] = {
                "requests": sum(counts.values()),
                "statuses": {str(code): n for code, n in sorted(counts.items())},
                "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1)
                if lat
                else None,
            }
        all_counts: Counter[int] = sum(self.statuses.values(), Counter())
        return {
            "requests": sum(all_counts.values()),
            "status_5xx": sum(n for code, n in all_counts.items() if code >= 500),
            "status_429": all_counts.get(429, 0),
            "non_2xx": sum(n for code, n in all_counts.items() if not 200 <= code < 300),
            "transport_errors": sum(self.transport_errors.values()),
            "transport_error_kinds": dict(self.transport_errors),
            "operations": ops,
        }


async def login(stats: Stats, client: httpx.AsyncClient, username: str, password: str):
    response = await stats.call(
        "login",
        client,
        "POST",
        "/api/v1/auth/login",
        data={"username": username, "password": password},
    )
    if response is None or response.status_code != 200:
        return None
    return response.json()


async def refresh(stats: Stats, client: httpx.AsyncClient, pair: dict) -> dict | None:
    """Rotate the pair's refresh token; the new pair, or None when refused."""
    response = await stats.call(
        "refresh",
        client,
        "POST",
        "/api/v1/auth/refresh",
        json={"refresh_token": pair["refresh_token"]},
    )
    if response is None or response.status_code != 200:
        return None
    return response.json()


async def light_worker(
    stats: Stats, client: httpx.AsyncClient, deadline: float, admin: tuple[str, str]
) -> None:
    pair = await login(stats, client, *admin)
    while pair is None and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        pair = await login(stats, client, *admin)
    while time.monotonic() < deadline and pair is not None:
        auth = {"Authorization": f"Bearer {pair['access_token']}"}
        roll = random.random()  # noqa: S311 - load mix, not security
        if roll < 0.6:
            await stats.call("me", client, "GET", "/api/v1/users/me", headers=auth)
        elif roll < 0.8:
            await stats.call(
                "admin_list", client, "GET", "/api/v1/users?offset=0&limit=20", headers=auth
            )
        else:
            pair = await refresh(stats, client, pair) or await login(stats, client, *admin)


async def heavy_worker(
    stats: Stats, client: httpx.AsyncClient, deadline: float, worker: int
) -> None:
    n = 0
    password = "soak-password-" + os.urandom(6).hex()
    while time.monotonic() < deadline:
        n += 1
        username = f"soak_{os.getpid()}_{worker}_{n}"
        signup = await stats.call(
            "signup",
            client,
            "POST",
            "/api/v1/auth/signup",
            json={
                "username": username,
                "email": f"{username}@example.com",
                "first_name": "Soak",
                "last_name": "User",
                "password": password,
            },
        )
        if signup is None or signup.status_code != 201 or time.monotonic() >= deadline:
            continue
        pair = await login(stats, client, username, password)
        if pair is None or time.monotonic() >= deadline:
            continue
        pair = await refresh(stats, client, pair) or pair
        await stats.call(
            "me",
            client,
            "GET",
            "/api/v1/users/me",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
        )


async def main(base_url: str, seconds: float, admin: tuple[str, str], light: int, heavy: int):
    if urlsplit(base_url).hostname not in ALLOWED_HOSTS:
        raise SystemExit(f"soak: refusing to load {base_url}: loopback only")
    stats = Stats()
    limits = httpx.Limits(max_connections=light + heavy, max_keepalive_connections=light + heavy)
    started = time.monotonic()
    deadline = started + seconds
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        workers = [light_worker(stats, client, deadline, admin) for _ in range(light)]
        workers += [heavy_worker(stats, client, deadline, i) for i in range(heavy)]
        # Bounded: a request in flight at the deadline gets at most its own timeout.
        await asyncio.wait_for(asyncio.gather(*workers), seconds + REQUEST_TIMEOUT + 5)
    result = stats.summary()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["light_workers"] = light
    result["heavy_workers"] = heavy
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    light_n = int(args[4]) if len(args) > 4 else 12
    heavy_n = int(args[5]) if len(args) > 5 else 2
    out = asyncio.run(main(args[0], float(args[1]), (args[2], args[3]), light_n, heavy_n))
    print(json.dumps(out))
