import uuid
from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import aliased

from app.core.clock import utc_now
from app.models.password_reset_token import PasswordResetToken
from app.repos.base import BaseRepository

_later = aliased(PasswordResetToken)


def _superseded(token: type[PasswordResetToken]) -> object:
    """True for a token of a user who asked again after it was requested."""
    return exists().where(_later.user_id == token.user_id, _later.requested_at > token.requested_at)


class PasswordResetTokenRepository(BaseRepository[PasswordResetToken]):
    model = PasswordResetToken

    async def get_by_request(self, request_id: uuid.UUID) -> PasswordResetToken | None:
        result = await self.session.scalars(
            select(PasswordResetToken).where(PasswordResetToken.request_id == request_id)
        )
        return result.first()

    async def get_by_hash(self, token_hash: str) -> PasswordResetToken | None:
        result = await self.session.scalars(
            select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash)
        )
        return result.first()

    async def is_superseded(self, user_id: uuid.UUID, requested_at: datetime) -> bool:
        """Whether the user asked for a reset after `requested_at`."""
        later = await self.session.scalar(
            select(
                exists().where(
                    PasswordResetToken.user_id == user_id,
                    PasswordResetToken.requested_at > requested_at,
                )
            )
        )
        return bool(later)

    async def claim(self, token_id: uuid.UUID) -> bool:
        """Mark the token used; True only for the one caller that did, while it was still good
        (unused, unexpired, not superseded): one atomic UPDATE, so two confirmations of the same
        link cannot both win.
        """
        now = utc_now()
        result = await self.session.execute(
            update(PasswordResetToken)
            .where(
                PasswordResetToken.id == token_id,
                PasswordResetToken.used_at.is_(None),
                PasswordResetToken.expires_at > now,
                ~_superseded(PasswordResetToken),  # type: ignore[operator]
            )
            .values(used_at=now, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def purge_expired(self, now: datetime) -> int:
        """Delete the tokens past their expiry; returns how many."""
        result = await self.session.execute(
            delete(PasswordResetToken).where(PasswordResetToken.expires_at <= now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
