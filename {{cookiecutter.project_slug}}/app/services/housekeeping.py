"""Rows that nothing needs any more: expired refresh and password-reset tokens.

Run by `python -m app.cli purge-expired` (a Kubernetes CronJob, or cron); idempotent, so
running it twice or late does no harm.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.repos.password_reset_token import PasswordResetTokenRepository
from app.repos.refresh_token import RefreshTokenRepository


@dataclass(frozen=True, slots=True)
class Purged:
    refresh_tokens: int
    password_reset_tokens: int


async def purge_expired(session: AsyncSession, now: datetime, *, leeway: timedelta) -> Purged:
    """Delete the tokens expired by `now` (refresh tokens once past the clock leeway too, the
    time they are still accepted); live and revoked-but-unexpired ones stay, so reuse of a
    revoked refresh token is still recognised.
    """
    refresh = await RefreshTokenRepository(session).purge_expired(now - leeway)
    resets = await PasswordResetTokenRepository(session).purge_expired(now)
    return Purged(refresh_tokens=refresh, password_reset_tokens=resets)
