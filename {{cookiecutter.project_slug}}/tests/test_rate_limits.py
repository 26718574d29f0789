"""Rate limits on the auth routes: what counts, what a limited request costs, and who the
client is{% if cookiecutter.use_redis %}; shared through Redis, and kept per process while Redis is down{% endif %}.
"""

{% if cookiecutter.use_redis -%}
import asyncio
{% endif -%}
from collections import OrderedDict
{%- if cookiecutter.use_redis %}
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
{%- else %}
from collections.abc import AsyncIterator, Callable, Iterator
{%- endif %}
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import bcrypt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from limits import RateLimitItemPerHour
from loguru import logger
from pydantic import ValidationError
{%- if cookiecutter.use_redis %}
from redis.asyncio import Redis
{%- endif %}
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api.v1.deps.db import get_database
from app.core import rate_limit
from app.core.exceptions import RateLimitedError
from app.core.rate_limit import RateLimiter
from app.main import create_app
from tests.helpers import (
    DEFAULT_PASSWORD,
    {%- if cookiecutter.use_redis %}
    PrivateRedis,
    {%- endif %}
    UserFactory,
    auth_headers,
    make_settings,
)

LIMITS = {
    "rate_limit_login_account": "3/minute",
    "rate_limit_login_address": "5/minute",
    "rate_limit_signup": "2/minute",
    "rate_limit_refresh": "2/minute",
    "rate_limit_password_change": "2/minute",
}
CLIENT = ("203.0.113.7", 40000)
OTHER_CLIENT = ("203.0.113.8", 40000)

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


def client_for(app: Any, address: tuple[str, int] = CLIENT) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=address), base_url="http://test")


@pytest.fixture
def running_app(app: FastAPI, session: AsyncSession) -> AppFactory:
    """Start apps of the test's own (each with its own limiter), on the test's transaction
    and its simulated services: the session app's dependency overrides are copied.
    `log_to` collects their warnings (`create_app` sets logging up anew, so a sink must be
    added after it).
    """

    @asynccontextmanager
    async def start(*, log_to: list[str] | None = None, **settings: Any) -> AsyncIterator[FastAPI]:
        other = create_app(make_settings(**{**LIMITS, **settings}))
        other.dependency_overrides.update(app.dependency_overrides)
        if log_to is not None:
            logger.add(log_to.append, level="WARNING", format="{message}")
        async with other.router.lifespan_context(other):
            yield other

    return start


@pytest.fixture
async def limited_app(running_app: AppFactory) -> AsyncIterator[FastAPI]:
    async with running_app() as app:
        yield app


@pytest.fixture
async def limited(limited_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with client_for(limited_app) as client:
        yield client


async def login(client: AsyncClient, username: str, password: str) -> Response:
    return await client.post(
        "/api/v1/auth/login", data={"username": username, "password": password}
    )


def assert_limited(response: Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"detail", "error_code", "timestamp"}
    assert body["error_code"] == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Limit"]) >= 1
    assert response.headers["RateLimit-Reset"] == str(retry_after)
    assert response.headers["RateLimit-Policy"].endswith(";w=60")


async def test_failed_logins_are_limited_per_account(
    limited: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    for _ in range(3):
        assert (await login(limited, user.username, "wrong password")).status_code == 401
    assert_limited(await login(limited, user.username, "wrong password"))
    # The account's budget is spent: even the right password waits for the window.
    assert_limited(await login(limited, user.email, DEFAULT_PASSWORD))
    # Another account from the same address is not affected by this one's budget.
    other = await make_user()
    assert (await login(limited, other.username, DEFAULT_PASSWORD)).status_code == 200


async def test_successful_logins_do_not_use_the_account_budget(
    limited: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    for _ in range(6):
        assert (await login(limited, user.username, DEFAULT_PASSWORD)).status_code == 200
    assert (await login(limited, user.username, "wrong password")).status_code == 401


async def test_failed_logins_are_limited_per_address(
    limited_app: FastAPI, make_user: UserFactory
) -> None:
    """The address alone is the key: each attempt comes over a new connection (another source
    port, as a client's every new connection has), and all of them share one budget.
    """
    users = [await make_user() for _ in range(3)]
    host, port = CLIENT
    for attempt in range(5):
        async with client_for(limited_app, (host, port + attempt)) as connection:
            response = await login(connection, users[attempt % 3].username, "wrong password")
        assert response.status_code == 401
    async with client_for(limited_app, (host, port + 5)) as connection:
        assert_limited(await login(connection, users[0].username, DEFAULT_PASSWORD))
    async with client_for(limited_app, OTHER_CLIENT) as elsewhere:
        assert (await login(elsewhere, users[0].username, DEFAULT_PASSWORD)).status_code == 200


async def test_a_limited_login_costs_no_password_check_and_no_query(
    limited: AsyncClient,
    make_user: UserFactory,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await make_user()
    for _ in range(3):
        await login(limited, user.username, "wrong password")
    checks: list[bytes] = []
    statements: list[str] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checks.append(password)
        return real_checkpw(password, hashed)

    def count_statement(*args: Any) -> None:
        statements.append(str(args[2]))

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    connection = (await session.connection()).sync_connection
    event.listen(connection, "before_cursor_execute", count_statement)
    try:
        assert_limited(await login(limited, user.username, "wrong password"))
    finally:
        event.remove(connection, "before_cursor_execute", count_statement)
    assert checks == []
    assert statements == []


async def test_a_key_known_to_be_blocked_costs_no_round_trip(
    limited_app: FastAPI,
    limited: AsyncClient,
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await make_user()
    for _ in range(3):
        await login(limited, user.username, "wrong password")
    assert_limited(await login(limited, user.username, "wrong password"))  # now known
    lookups: list[object] = []
    real_run = RateLimiter._run

    async def counting_run(self: RateLimiter, operation: Any) -> Any:
        lookups.append(operation)
        return await real_run(self, operation)

    monkeypatch.setattr(RateLimiter, "_run", counting_run)
    assert_limited(await login(limited, user.username, "wrong password"))
    # Refused from memory before routing: no lookup of any budget.
    assert lookups == []
    # The same account from another address: refused from memory too.
    async with client_for(limited_app, OTHER_CLIENT) as elsewhere:
        assert_limited(await login(elsewhere, user.username, "wrong password"))
    assert lookups == []
    # Other routes and other accounts still go through the limiter as usual.
    other = await make_user()
    assert (await login(limited, other.username, DEFAULT_PASSWORD)).status_code == 200
    assert lookups


async def test_an_address_known_to_be_blocked_is_refused_before_routing(
    limited_app: FastAPI,
    limited: AsyncClient,
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The login guard answers 429 for an address it knows is used up, whatever the account:
    no routing, no limiter lookup, no database session.
    """
    users = [await make_user() for _ in range(3)]
    for attempt in range(5):
        await login(limited, users[attempt % 3].username, "wrong password")
    assert_limited(await login(limited, users[0].username, "wrong password"))  # now known
    fresh = await make_user()  # an account with its whole budget
    work: list[str] = []

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        async def count(*args: Any, **kwargs: Any) -> Any:
            work.append(name)
            return await real(*args, **kwargs)

        return count

    for method in ("hit", "check", "_run"):
        monkeypatch.setattr(RateLimiter, method, counting(method, getattr(RateLimiter, method)))
    router = limited_app.router
    monkeypatch.setattr(router, "middleware_stack", counting("routing", router.middleware_stack))
    test_database = limited_app.dependency_overrides[get_database]

    async def counting_database() -> Any:  # no parameters, as FastAPI reads them
        work.append("database")
        return await test_database()

    monkeypatch.setitem(limited_app.dependency_overrides, get_database, counting_database)

    assert_limited(await login(limited, fresh.username, DEFAULT_PASSWORD))
    assert work == []
    # The same login from another address goes the whole way.
    async with client_for(limited_app, OTHER_CLIENT) as elsewhere:
        assert (await login(elsewhere, fresh.username, DEFAULT_PASSWORD)).status_code == 200
    assert {"routing", "check", "_run", "database"} <= set(work)


async def test_a_full_memory_of_used_up_keys_makes_room_without_a_pass_over_it(
    limited_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the cap, a newly used-up key takes the place of the one remembered longest: one
    eviction, not a pass over every key (a rebuild of 100,000 keys per new key stalls the
    event loop under a storm of distinct keys).
    """
    cap = 50
    monkeypatch.setattr(rate_limit, "BLOCKED_KEYS_MAX", cap)
    limiter: RateLimiter = limited_app.state.rate_limiter
    remembered = limiter._blocked_until = ScanCountingDict()

    async def use_up(address: str) -> None:
        for _ in range(2):  # LIMITS: signup 2/minute
            await limiter.hit("signup", address)
        with pytest.raises(RateLimitedError):
            await limiter.hit("signup", address)

    addresses = [f"198.51.100.{n}" for n in range(cap + 2)]
    for address in addresses[:cap]:
        await use_up(address)
    assert len(remembered) == cap
    remembered.scans = 0
    for address in addresses[cap:]:
        await use_up(address)
    assert limiter._blocked_until is remembered
    assert remembered.scans == 0
    assert len(remembered) == cap
    # The two remembered longest made room; every other key is still refused from memory.
    known = [limiter.known_blocked("signup", address) is not None for address in addresses]
    assert known == [False, False] + [True] * cap


class ScanCountingDict(OrderedDict[tuple[str, str], float]):
    """The limiter's memory of used-up keys, counting every pass over its entries."""

    scans = 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        self.scans += 1
        return super().__iter__()

    def keys(self) -> Any:
        self.scans += 1
        return super().keys()

    def values(self) -> Any:
        self.scans += 1
        return super().values()

    def items(self) -> Any:
        self.scans += 1
        return super().items()


@pytest.mark.parametrize(
    ("path", "json"),
    [
        ("/api/v1/auth/signup", {"username": "x"}),
        ("/api/v1/auth/refresh", {"refresh_token": "not-a-token"}),
    ],
)
async def test_signup_and_refresh_are_limited_per_address(
    limited_app: FastAPI, limited: AsyncClient, path: str, json: dict[str, str]
) -> None:
    """Every request counts, whatever its answer."""
    for _ in range(2):
        assert (await limited.post(path, json=json)).status_code in {401, 422}
    assert_limited(await limited.post(path, json=json))
    async with client_for(limited_app, OTHER_CLIENT) as elsewhere:
        assert (await elsewhere.post(path, json=json)).status_code in {401, 422}


async def test_an_allowed_request_says_what_is_left(limited: AsyncClient) -> None:
    signup = {
        "username": "counted",
        "email": "counted@example.com",
        "first_name": "Count",
        "last_name": "Ed",
        "password": "a sound password",
    }
    response = await limited.post("/api/v1/auth/signup", json=signup)
    assert response.status_code == 201, response.text
    assert response.headers["RateLimit-Limit"] == "2"
    assert response.headers["RateLimit-Remaining"] == "1"
    assert response.headers["RateLimit-Policy"] == "2;w=60"


async def test_password_changes_are_limited_per_address(
    limited: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    change = {"current_password": "not the password", "new_password": "a brand new one"}
    for _ in range(2):
        response = await limited.post(
            "/api/v1/users/me/password", json=change, headers=auth_headers(user)
        )
        assert response.status_code == 400
    assert_limited(
        await limited.post("/api/v1/users/me/password", json=change, headers=auth_headers(user))
    )


async def test_forwarded_address_counts_only_from_a_trusted_proxy(limited_app: FastAPI) -> None:
    """uvicorn's proxy-header handling decides the client address the limits see."""
    behind_proxy = ProxyHeadersMiddleware(limited_app, trusted_hosts="10.0.0.1")
    # Not the proxy: whatever it claims in X-Forwarded-For, every attempt is its own address's.
    async with client_for(behind_proxy, CLIENT) as untrusted:
        for n in range(5):
            spoofed = {"X-Forwarded-For": f"198.51.100.{n}"}
            response = await untrusted.post("/api/v1/auth/signup", json={}, headers=spoofed)
            assert response.status_code == (422 if n < 2 else 429)
    # The trusted proxy: each forwarded client has its own budget.
    async with client_for(behind_proxy, ("10.0.0.1", 5000)) as proxy:
        for n in range(5):
            forwarded = {"X-Forwarded-For": f"198.51.100.{n}"}
            response = await proxy.post("/api/v1/auth/signup", json={}, headers=forwarded)
            assert response.status_code == 422


async def test_openapi_documents_the_429s(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/auth/login", "/auth/signup", "/auth/refresh", "/users/me/password"):
        assert "429" in paths[f"/api/v1{path}"]["post"]["responses"], path


def test_a_limit_is_parsed_when_the_settings_are_read() -> None:
    assert make_settings(rate_limit_signup="7/hour").rate_limit_signup == RateLimitItemPerHour(7)


@pytest.mark.parametrize("value", ["5 per fortnight", "", "five/minute"])
def test_a_malformed_limit_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_signup") as info:
        make_settings(rate_limit_signup=value)
    assert "must be a rate limit like '5/minute'" in str(info.value)
{%- if cookiecutter.use_redis %}


async def test_limits_are_shared_by_every_process_through_redis(
    redis_required: None, running_app: AppFactory, make_user: UserFactory
) -> None:
    """Two apps (two processes' worth of memory) count failed logins against one budget."""
    user = await make_user()
    async with (
        running_app() as first,
        running_app() as second,
        client_for(first) as one,
        client_for(second) as two,
    ):
        for client in (one, two, one):
            assert (await login(client, user.username, "wrong")).status_code == 401
        assert_limited(await login(two, user.username, "wrong"))
        assert_limited(await login(one, user.username, "wrong"))


async def test_redis_outage_falls_back_to_memory_and_is_logged_once(
    running_app: AppFactory, make_user: UserFactory
) -> None:
    user = await make_user()
    lines: list[str] = []
    unreachable = "redis://127.0.0.1:1/0"
    async with (
        running_app(log_to=lines, redis_url=unreachable) as app,
        client_for(app) as client,
    ):
        statuses = [(await login(client, user.username, "wrong")).status_code for _ in range(5)]
        ready = await client.get("/health/ready")
    assert statuses == [401, 401, 401, 429, 429]
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "down"
    outage_lines = [line for line in lines if "Redis unreachable" in line]
    assert len(outage_lines) == 1, lines


async def test_while_redis_hangs_one_request_tries_it_and_the_others_do_not_wait(
    private_redis: PrivateRedis, running_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stops (the outage is noticed), then comes back hung: the one request that tries it
    again waits for it, and the requests arriving meanwhile are answered from memory.
    """
    lines: list[str] = []
    settings = {
        "redis_url": private_redis.url,
        # The probe waits for the hung server until the test thaws it, however long the burst
        # takes on a loaded machine.
        "redis_socket_timeout": 120,
        "rate_limit_signup": "1000/minute",
    }
    async with running_app(log_to=lines, **settings) as app, client_for(app) as client:
        assert (await client.post(SIGNUP, json={})).status_code == 422  # counted in Redis
        private_redis.stop()
        assert (await client.post(SIGNUP, json={})).status_code == 422  # counted in memory
        private_redis.start()
        private_redis.freeze()  # accepts connections, answers nothing
        shared = StorageCalls(app.state.rate_limiter._shared.storage, monkeypatch)
        await asyncio.sleep(rate_limit.REDIS_RETRY_SECONDS)  # the next try is due
        probe = asyncio.create_task(client.post(SIGNUP, json={}))

        async def probing() -> bool:
            return shared.started == 1

        await until(probing)
        burst = [asyncio.create_task(client.post(SIGNUP, json={})) for _ in range(50)]

        async def answered_or_tried_again() -> bool:
            return shared.started > 1 or all(request.done() for request in burst)

        try:
            await until(answered_or_tried_again, within=60)
            # Every request of the burst was answered while the probe was still waiting.
            assert (shared.started, shared.in_flight) == (1, 1)
        finally:
            private_redis.thaw()
            answers = await asyncio.gather(*burst, probe)
        assert [response.status_code for response in answers] == [422] * 51
    assert sum("Redis unreachable" in line for line in lines) == 1, lines


async def test_after_a_redis_outage_the_limits_are_shared_again(
    private_redis: PrivateRedis, running_app: AppFactory, make_user: UserFactory
) -> None:
    user = await make_user()
    # password_change: the budget the test watches Redis come back with.
    settings = {"redis_url": private_redis.url, "rate_limit_password_change": "1000/minute"}
    async with (
        running_app(**settings) as first,
        running_app(**settings) as second,
        client_for(first) as one,
        client_for(second) as two,
    ):
        private_redis.stop()
        for client in (one, two):  # each counts in its own memory
            assert (await login(client, user.username, "wrong")).status_code == 401
        private_redis.start()  # back, and empty
        for app in (first, second):
            await until_counting_in_redis(app, private_redis)
        for client in (one, two, one):
            assert (await login(client, user.username, "wrong")).status_code == 401
        assert_limited(await login(two, user.username, "wrong"))
        assert_limited(await login(one, user.username, "wrong"))


SIGNUP = "/api/v1/auth/signup"


class StorageCalls:
    """Counts the calls that reach a limit storage, and those still waiting for its answer."""

    def __init__(self, storage: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self.in_flight = 0
        for method in ("acquire_entry", "get_moving_window"):
            monkeypatch.setattr(storage, method, self._counting(getattr(storage, method)))

    def _counting(self, real: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.started += 1
            self.in_flight += 1
            try:
                return await real(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return call


async def until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        assert loop.time() < deadline, f"{condition.__name__}: not within {within} s"
        await asyncio.sleep(0.02)


async def until_counting_in_redis(app: FastAPI, server: PrivateRedis) -> None:
    """Count attempts with the app's limiter until one lands in Redis."""
    limiter: RateLimiter = app.state.rate_limiter
    marker = f"recovery-{id(app)}"
    redis = Redis.from_url(server.url)

    async def counted_in_redis() -> bool:
        await limiter.hit("password_change", marker)
        return bool(await redis.keys(f"*{marker}*"))

    try:
        await until(counted_in_redis)
    finally:
        await redis.aclose()
{%- else %}


async def test_several_workers_without_redis_warn_at_start(running_app: AppFactory) -> None:
    lines: list[str] = []
    async with running_app(log_to=lines, web_concurrency=4):
        pass
    async with running_app(log_to=lines, web_concurrency=1):
        pass
    warnings = [line for line in lines if "WEB_CONCURRENCY=4" in line]
    assert len(warnings) == 1, lines
    assert "own rate-limit counts" in warnings[0]
{%- endif %}
