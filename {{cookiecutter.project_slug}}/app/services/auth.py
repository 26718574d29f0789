"""Sign-up, login and the refresh-token lifecycle: the multi-step logic behind /auth."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import (
    IssuedToken,
    TokenType,
    create_token,
    decode_token,
    hash_password,
    verify_password,
)
from app.core.config import get_settings
from app.core.exceptions import AuthenticationError, BadRequestError, PermissionDeniedError
from app.models.user import User
from app.repos.refresh_token import RefreshTokenRepository
from app.repos.user import UserRepository
from app.schemas.token import TokenPair
from app.schemas.user import PasswordChange, UserCreate


class AuthService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.tokens = RefreshTokenRepository(session)

    async def signup(self, data: UserCreate) -> User:
        user = User(
            username=data.username,
            email=data.email,
            first_name=data.first_name,
            last_name=data.last_name,
            hashed_password=await hash_password(data.password),
        )
        return await self.users.create(user)

    async def login(self, login: str, password: str) -> TokenPair:
        user = await self.users.get_by_login(login)
        # End the read before the slow hash: no pooled connection or SQLite lock is held while
        # hashing, so a login storm cannot starve other requests of the database.
        await self.session.commit()
        password_ok = await verify_password(password, user.hashed_password if user else None)
        if user is None or not password_ok:
            raise AuthenticationError("Incorrect username or password")
        if not user.is_active:
            raise PermissionDeniedError("Inactive user")
        return await self._issue_pair(user.id, family_id=uuid.uuid4())

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = decode_token(refresh_token, TokenType.REFRESH)
        if not await self.tokens.revoke_if_active(claims.jti):
            await self._handle_dead_token(claims.jti)
        stored = await self.tokens.get(claims.jti)
        user = await self.users.get(claims.subject)
        if stored is None or user is None or stored.user_id != user.id:
            raise AuthenticationError("Invalid refresh token")
        if not user.is_active:
            raise PermissionDeniedError("Inactive user")
        return await self._issue_pair(user.id, family_id=stored.family_id)

    async def logout(self, refresh_token: str) -> None:
        claims = decode_token(refresh_token, TokenType.REFRESH)
        await self.tokens.revoke_if_active(claims.jti)

    async def change_password(self, user: User, data: PasswordChange) -> None:
        if not await verify_password(data.current_password, user.hashed_password):
            raise BadRequestError("Current password is incorrect")
        await self.users.update_fields(
            user, {"hashed_password": await hash_password(data.new_password)}
        )
        await self.tokens.revoke_all_for_user(user.id)

    async def _handle_dead_token(self, jti: uuid.UUID) -> None:
        """A token that is unknown or already used; reuse of a rotated one kills its family."""
        stored = await self.tokens.get(jti)
        if stored is None:
            raise AuthenticationError("Invalid refresh token")
        await self.tokens.revoke_family(stored.family_id)
        # Committed now: the error below rolls the request's session back.
        await self.session.commit()
        raise AuthenticationError("Refresh token has been revoked")

    async def _issue_pair(self, user_id: uuid.UUID, *, family_id: uuid.UUID) -> TokenPair:
        access = create_token(user_id, TokenType.ACCESS)
        refresh: IssuedToken = create_token(user_id, TokenType.REFRESH)
        await self.tokens.create(
            jti=refresh.claims.jti,
            user_id=user_id,
            family_id=family_id,
            expires_at=refresh.claims.expires_at,
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=get_settings().access_token_expire_minutes * 60,
        )
