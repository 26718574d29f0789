import uuid
from datetime import datetime

from sqlalchemy import delete, update

from app.core.clock import utc_now
from app.models.refresh_token import RefreshToken
from app.repos.base import BaseRepository


class RefreshTokenRepository(BaseRepository[RefreshToken]):
    model = RefreshToken

    async def create(
        self, *, jti: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: datetime
    ) -> RefreshToken:
        token = RefreshToken(id=jti, user_id=user_id, family_id=family_id, expires_at=expires_at)
        return await self.add(token)

    async def revoke_if_active(self, jti: uuid.UUID) -> bool:
        """Revoke one token; True only for the caller that revoked it (one atomic UPDATE)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == jti, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utc_now(), updated_at=utc_now())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utc_now(), updated_at=utc_now())
        )

    async def revoke_all_for_user(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utc_now(), updated_at=utc_now())
        )

    async def purge_expired(self, before: datetime) -> int:
        """Delete the tokens that expired before `before`; returns how many."""
        result = await self.session.execute(
            delete(RefreshToken).where(RefreshToken.expires_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
