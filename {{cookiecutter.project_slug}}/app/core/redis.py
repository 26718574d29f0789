"""The Redis client: one per process, built in the app's lifespan from its settings."""

from redis.asyncio import Redis

from app.core.config import Settings


def create_redis(settings: Settings) -> Redis:
    """A client with a lazy connection pool: building it does no I/O."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        # Ping idle connections before reuse, so a restarted Redis costs no failed request.
        health_check_interval=30,
    )
