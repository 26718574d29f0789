"""Rate limits for the auth routes, counted by the `limits` library.

{%- if cookiecutter.use_redis %}

The counts live in Redis, shared by every worker and replica. When Redis cannot be reached,
the limits fall back to this process's memory, so requests keep being answered and limited:
the outage is logged once when it starts and once when it ends. Meanwhile one request at a time
tries Redis again, at most once every `REDIS_RETRY_SECONDS`; the others do not wait for it.
{%- else %}

The counts live in this process's memory: each worker process counts on its own.
{%- endif %}
"""

import hashlib
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem
{%- if cookiecutter.use_redis %}
from limits.aio.storage import MemoryStorage, RedisStorage
{%- else %}
from limits.aio.storage import MemoryStorage
{%- endif %}
from limits.aio.strategies import MovingWindowRateLimiter
{%- if cookiecutter.use_redis %}
from limits.errors import StorageError
from loguru import logger
from redis.asyncio import Redis
{%- endif %}
from starlette.types import Scope

from app.core.config import Settings
from app.core.exceptions import RateLimitedError

{%- if cookiecutter.use_redis %}

REDIS_RETRY_SECONDS = 1.0
{%- endif %}

T = TypeVar("T")
# Keys remembered as used up, at most; past that, each new one makes room by forgetting the one
# remembered longest (which then costs a round trip to the storage again, nothing more).
BLOCKED_KEYS_MAX = 100_000


@dataclass(frozen=True, slots=True)
class LimitState:
    """Where one client stands against one limit, as the standard response headers say it."""

    limit: RateLimitItem
    remaining: int
    reset_at: float  # epoch seconds

    def headers(self) -> dict[str, str]:
        reset_after = max(1, math.ceil(self.reset_at - time.time()))
        window = self.limit.get_expiry()
        return {
            "RateLimit-Limit": str(self.limit.amount),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(reset_after),
            "RateLimit-Policy": f"{self.limit.amount};w={window}",
        }

    def error(self) -> RateLimitedError:
        headers = self.headers()
        return RateLimitedError(headers={"Retry-After": headers["RateLimit-Reset"], **headers})


def client_address(scope: Scope) -> str:
    """The peer's address; behind a proxy listed in uvicorn's FORWARDED_ALLOW_IPS, the client's
    address that the proxy forwarded (a forwarded header from anyone else is ignored).
    """
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def account_key(login: str) -> str:
    """The key of an account as a client named it (a username or an e-mail, as typed): a
    digest, so any text makes a short key and the limit store holds no usernames or addresses.
    """
    normalized = unicodedata.normalize("NFKC", login).strip().lower()
    return "account:" + hashlib.sha256(normalized.encode()).hexdigest()[:32]


class RateLimiter:
    """The named limits of the settings (`login_account`, `signup`, ...), per key."""
    {%- if cookiecutter.use_redis %}

    def __init__(self, settings: Settings, redis: Redis) -> None:
    {%- else %}

    def __init__(self, settings: Settings) -> None:
    {%- endif %}
        self.limits: dict[str, RateLimitItem] = {
            "login_account": settings.rate_limit_login_account,
            "login_address": settings.rate_limit_login_address,
            "signup": settings.rate_limit_signup,
            "refresh": settings.rate_limit_refresh,
            "password_change": settings.rate_limit_password_change,
            "password_reset_account": settings.rate_limit_password_reset_account,
            "password_reset_address": settings.rate_limit_password_reset_address,
            "password_reset_confirm": settings.rate_limit_password_reset_confirm,
        }
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        # (limit name, key) -> when its window frees up. A moving window gains no capacity
        # before then, so a key known to be used up is refused without asking the storage:
        # a blocked attempt costs no round trip. Oldest first: making room is O(1).
        self._blocked_until: OrderedDict[tuple[str, str], float] = OrderedDict()
        {%- if cookiecutter.use_redis %}
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            # One Redis client per process: the limits share its connection pool. (`limits`
            # types these pass-through options narrowly; redis-py takes a pool here.)
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            key_prefix=f"{settings.redis_key_prefix}:limits",
            wrap_exceptions=True,
        )
        self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_since: float | None = None
        {%- endif %}

    async def hit(self, name: str, key: str) -> LimitState:
        """Count one attempt; raise `RateLimitedError` (429) when the limit is used up."""
        limit = self._refuse_if_known_blocked(name, key)
        allowed = await self._run(lambda limiter: limiter.hit(limit, name, key))
        state = await self._state(limit, name, key)
        if not allowed:
            raise self._blocked(name, key, state)
        return state

    async def check(self, name: str, key: str) -> LimitState:
        """Raise `RateLimitedError` (429) when the limit is used up; counts nothing."""
        limit = self._refuse_if_known_blocked(name, key)
        state = await self._state(limit, name, key)
        if state.remaining <= 0:
            raise self._blocked(name, key, state)
        return state

    def known_blocked(self, name: str, key: str) -> LimitState | None:
        """Where `key` stands if this process already knows it is used up; no I/O."""
        until = self._blocked_until.get((name, key))
        if until is None:
            return None
        if until <= time.time():
            del self._blocked_until[(name, key)]
            return None
        return LimitState(limit=self.limits[name], remaining=0, reset_at=until)

    def _refuse_if_known_blocked(self, name: str, key: str) -> RateLimitItem:
        blocked = self.known_blocked(name, key)
        if blocked is not None:
            raise blocked.error()
        return self.limits[name]

    def _blocked(self, name: str, key: str, state: LimitState) -> RateLimitedError:
        blocked = self._blocked_until
        blocked.pop((name, key), None)
        if len(blocked) >= BLOCKED_KEYS_MAX:
            blocked.popitem(last=False)
        blocked[(name, key)] = state.reset_at
        return state.error()

    async def reset(self) -> None:
        """Forget every count (for tests)."""
        self._blocked_until.clear()
        await self._memory.storage.reset()
        {%- if cookiecutter.use_redis %}
        await self._run(lambda limiter: limiter.storage.reset())
        {%- endif %}

    async def _state(self, limit: RateLimitItem, name: str, key: str) -> LimitState:
        stats = await self._run(lambda limiter: limiter.get_window_stats(limit, name, key))
        return LimitState(limit=limit, remaining=stats.remaining, reset_at=stats.reset_time)
    {%- if cookiecutter.use_redis %}

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """On Redis while it answers; on this process's memory while it does not."""
        down_since = self._shared_down_since
        if down_since is not None:
            if time.monotonic() - down_since < REDIS_RETRY_SECONDS:
                return await operation(self._memory)
            # This request tries Redis again. Pushing the next try out before awaiting it keeps
            # the requests that arrive meanwhile on memory: one probe, and nobody waits for it.
            self._shared_down_since = time.monotonic()
        try:
            result = await operation(self._shared)
        except StorageError as exc:  # what `limits` makes of every Redis error
            if self._shared_down_since is None:
                logger.warning(
                    "Redis unreachable ({}): rate limits fall back to this process's memory",
                    type(exc.storage_error).__name__,
                )
            self._shared_down_since = time.monotonic()
            return await operation(self._memory)
        if down_since is not None:
            logger.info("Redis reachable again: rate limits are shared again")
            self._shared_down_since = None
        return result
    {%- else %}

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        return await operation(self._memory)
    {%- endif %}
