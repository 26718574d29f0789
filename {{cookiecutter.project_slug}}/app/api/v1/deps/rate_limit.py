from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from app.core.rate_limit import RateLimiter, client_address


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def limit_per_address(name: str) -> Callable[..., Awaitable[None]]:
    """A route dependency counting each request against the limit `name` per client address.

    Route dependencies run first: a limited request answers 429 before any database or
    password work.
    """

    async def count(request: Request, response: Response, limiter: RateLimiterDep) -> None:
        state = await limiter.hit(name, client_address(request.scope))
        response.headers.update(state.headers())

    return count
