"""Many processes, one service: the PostgreSQL + Redis variant proven across real processes.

Two separate uvicorn processes of the rendered project share one PostgreSQL database and one
Redis. Over HTTP they must agree on everything that is shared: the failed-login budget, refresh
token rotation and revocation, deactivation, and who wins a signup race. Then their Redis
stops (a private `redis-server` this test started on its own port, never the shared one):
both keep answering with no 5xx, readiness stays 200 and reports Redis down, and limits hold
per process; when Redis is back, sharing resumes. Last, one uvicorn with `--workers 2` on one
port keeps one shared budget too.
"""

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers import PYTHON, tool_env
from servers import (
    RedisServer,
    free_port,
    mail_env,
    migrate_with_superuser,
    serve,
    tail,
    throwaway_database,
)

pytestmark = pytest.mark.slow

VARIANT = {"database": "postgresql", "use_b2_storage": False, "use_redis": True}
ACCOUNT_LIMIT = 4
PASSWORD = "a sound password"
ADMIN = {"username": "scaleadmin", "email": "scale-admin@example.com"}


class Client:
    """One process's base URL; every status it answers is kept, to check for 5xx at the end."""

    def __init__(self, base_url: str, statuses: list[int]) -> None:
        self.base_url = base_url
        self.statuses = statuses

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = httpx.request(method, f"{self.base_url}{path}", timeout=10, **kwargs)
        self.statuses.append(response.status_code)
        return response

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = {"username": username, "password": password}
        return self.request("POST", "/api/v1/auth/login", data=form)

    def signup(self, username: str, email: str | None = None) -> httpx.Response:
        body = {
            "username": username,
            "email": email or f"{username}@example.com",
            "first_name": "Scale",
            "last_name": "Out",
            "password": PASSWORD,
        }
        return self.request("POST", "/api/v1/auth/signup", json=body)


@pytest.fixture(scope="module")
def project(render_once, tmp_path_factory) -> Iterator[tuple[Path, dict[str, str], RedisServer]]:
    """The rendered variant, migrated into a throwaway database, with a superuser and a private
    Redis; yields its root, the environment its processes share, and the Redis.
    """
    root = render_once(**VARIANT)
    work = tmp_path_factory.mktemp("scale-out")
    redis = RedisServer(work)
    redis.start()
    try:
        with throwaway_database("postgresql", work, "tpl_scale") as database_url:
            env = tool_env(
                DATABASE_URL=database_url,
                REDIS_URL=redis.url,
                REDIS_KEY_PREFIX=f"scale-{secrets.token_hex(6)}",
                # Not prod: its floor on BCRYPT_ROUNDS would make these logins slow.
                CURRENT_ENVIRONMENT="staging",
                SECRET_KEY=secrets.token_urlsafe(64),
                BCRYPT_ROUNDS="4",
                LOG_LEVEL="INFO",
                RATE_LIMIT_LOGIN_ACCOUNT=f"{ACCOUNT_LIMIT}/minute",
                RATE_LIMIT_LOGIN_ADDRESS="1000/minute",
                RATE_LIMIT_SIGNUP="1000/minute",
                **mail_env(),
            )
            migrate_with_superuser(root, env, **ADMIN, password=PASSWORD)
            yield root, env, redis
    finally:
        redis.stop()


@contextmanager
def uvicorn(root: Path, env: dict[str, str], log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", *extra]
    base_url = f"http://127.0.0.1:{port}"
    with serve(cmd, root, env, log, base_url):
        yield base_url


def exhaust_account(clients: list[Client], username: str) -> list[int]:
    """ACCOUNT_LIMIT failed logins spread round-robin over the clients."""
    return [
        clients[n % len(clients)].login(username, "wrong password").status_code
        for n in range(ACCOUNT_LIMIT)
    ]


def test_two_processes_share_one_service(project, tmp_path):
    root, env, redis = project
    statuses: list[int] = []
    with (
        uvicorn(root, env, tmp_path / "a.log") as url_a,
        uvicorn(root, env, tmp_path / "b.log") as url_b,
    ):
        a, b = Client(url_a, statuses), Client(url_b, statuses)

        # Failed logins split across the processes draw on one budget.
        assert a.signup("shared").status_code == 201
        assert exhaust_account([a, b], "shared") == [401] * ACCOUNT_LIMIT
        for process in (a, b):
            limited = process.login("shared")
            assert limited.status_code == 429, limited.text
            assert limited.json()["error_code"] == "RATE_LIMITED"
            assert int(limited.headers["Retry-After"]) >= 1

        # A refresh token rotated on A and replayed on B is refused; its family dies on both.
        assert a.signup("rotator").status_code == 201
        first = a.login("rotator").json()
        second = a.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert second.status_code == 200
        replay = b.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert replay.status_code == 401
        for process in (a, b):
            family = process.request(
                "POST",
                "/api/v1/auth/refresh",
                json={"refresh_token": second.json()["refresh_token"]},
            )
            assert family.status_code == 401, family.text

        # A user deactivated through A is refused on B at once.
        created = a.signup("leaver")
        user_token = a.login("leaver").json()["access_token"]
        user = {"Authorization": f"Bearer {user_token}"}
        assert b.request("GET", "/api/v1/users/me", headers=user).status_code == 200
        admin_token = b.login(ADMIN["username"]).json()["access_token"]
        deactivated = a.request(
            "PATCH",
            f"/api/v1/users/{created.json()['id']}",
            json={"is_active": False},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert deactivated.status_code == 200, deactivated.text
        assert b.request("GET", "/api/v1/users/me", headers=user).status_code == 403

        # A signup race across both processes has exactly one winner.
        race = asyncio.run(signup_race([url_a, url_b], racers=20))
        statuses += race
        assert sorted(race) == [201] + [409] * 19

        # Redis stops: both keep answering, readiness stays 200, limits hold per process.
        redis.stop()
        for process in (a, b):
            ready = process.request("GET", "/health/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "redis": "down"}
            assert process.request("GET", "/api/v1/users/me", headers=user).status_code == 403
        assert a.signup("alone").status_code == 201
        assert exhaust_account([a], "alone") == [401] * ACCOUNT_LIMIT
        assert a.login("alone").status_code == 429
        # B counts in its own memory now: A's failures are not its own.
        assert b.login("alone", "wrong password").status_code == 401

        # Redis is back (empty): after the retry interval the processes share again.
        redis.start()
        time.sleep(1.2)
        assert a.signup("reunited").status_code == 201
        assert exhaust_account([a, b], "reunited") == [401] * ACCOUNT_LIMIT
        assert a.login("reunited").status_code == 429
        assert b.login("reunited").status_code == 429

    assert not [status for status in statuses if status >= 500], statuses
    for log in ("a.log", "b.log"):
        text = (tmp_path / log).read_text(encoding="utf-8")
        assert text.count("Redis unreachable") == 1, tail(tmp_path / log)
        assert text.count("Redis reachable again") == 1, tail(tmp_path / log)


async def signup_race(urls: list[str], racers: int) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"{urls[n % len(urls)]}/api/v1/auth/signup",
                    json={
                        "username": f"racer{n}",
                        "email": "race@example.com",
                        "first_name": "Rae",
                        "last_name": "Sing",
                        "password": PASSWORD,
                    },
                )
                for n in range(racers)
            )
        )
    return [response.status_code for response in responses]


def test_workers_of_one_server_share_the_limit(project, tmp_path):
    root, env, redis = project
    if redis.proc is None:
        redis.start()
    statuses: list[int] = []
    with uvicorn(root, env, tmp_path / "workers.log", "--workers", "2") as url:
        server = Client(url, statuses)
        assert server.signup("worker-shared").status_code == 201
        # A fresh connection per request: the workers take turns accepting them.
        assert exhaust_account([server], "worker-shared") == [401] * ACCOUNT_LIMIT
        for _ in range(3):
            assert server.login("worker-shared").status_code == 429
    assert not [status for status in statuses if status >= 500], statuses
    assert "Started parent process" in (tmp_path / "workers.log").read_text(encoding="utf-8")
