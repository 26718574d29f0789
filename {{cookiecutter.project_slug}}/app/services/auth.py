"""Sign-up, login and the refresh-token lifecycle: the multi-step logic behind /auth."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import IssuedToken, PasswordHasher, TokenCodec, TokenType
from app.core.clock import utc_now
from app.core.exceptions import (
    AuthenticationError,
    BadRequestError,
    ExpiredResetTokenError,
    InvalidResetTokenError,
    LastSuperuserError,
    PermissionDeniedError,
    SupersededResetTokenError,
    UsedResetTokenError,
)
from app.core.rate_limit import RateLimiter, account_key
from app.models.user import User
from app.repos.password_reset_token import PasswordResetTokenRepository
from app.repos.refresh_token import RefreshTokenRepository
from app.repos.user import UserRepository
from app.schemas.token import TokenPair
from app.schemas.user import PasswordChange, UserCreate
from app.services.password_reset import hash_reset_token


async def register_user(session: AsyncSession, passwords: PasswordHasher, data: UserCreate) -> User:
    """A new user with the password hashed (a duplicate is a ConflictError): sign-up, and the
    CLI's create-superuser, which signs no token.
    """
    user = User(
        username=data.username,
        email=data.email,
        first_name=data.first_name,
        last_name=data.last_name,
        hashed_password=await passwords.hash(data.password.get_secret_value()),
    )
    return await UserRepository(session).create(user)


class LoginLimits:
    """Failed logins, counted per account and per client address.

    An account is counted under the login text it was tried with, which is known before any
    query, and under the user it names, once looked up: trying the e-mail after the username
    draws on the same budget.
    """

    def __init__(self, limiter: RateLimiter, login: str, address: str) -> None:
        self.limiter = limiter
        self.accounts = [account_key(login)]
        self.address = address

    def found(self, user: User | None) -> None:
        if user is not None:
            self.accounts.append(f"user:{user.id}")

    async def check(self) -> None:
        """429 when a budget is used up. The account first: a storm against one account from
        many addresses is then refused from memory, with no round trip for each address.
        """
        for account in self.accounts:
            await self.limiter.check("login_account", account)
        await self.limiter.check("login_address", self.address)

    async def record_failure(self) -> None:
        await self.limiter.hit("login_address", self.address)
        for account in self.accounts:
            await self.limiter.hit("login_account", account)


class AuthService:
    def __init__(
        self, session: AsyncSession, passwords: PasswordHasher, tokens: TokenCodec
    ) -> None:
        self.session = session
        self.passwords = passwords
        self.codec = tokens
        self.users = UserRepository(session)
        self.tokens = RefreshTokenRepository(session)

    async def signup(self, data: UserCreate) -> User:
        return await register_user(self.session, self.passwords, data)

    async def login(self, login: str, password: str, limits: LoginLimits) -> TokenPair:
        # A used-up budget answers before any database or password work.
        await limits.check()
        user = await self.users.get_by_login(login)
        limits.found(user)
        # End the read before the slow hash: no pooled connection or database lock is held
        # while hashing, so a login storm cannot starve other requests of the database.
        await self.session.commit()
        # Checked again when this attempt's turn to hash comes: attempts that queued up before
        # the budget ran out are refused without hashing.
        password_ok = await self.passwords.verify(
            password, user.hashed_password if user else None, before_check=limits.check
        )
        if user is None or not password_ok:
            await limits.record_failure()
            raise AuthenticationError("Incorrect username or password")
        if not user.is_active:
            raise PermissionDeniedError("Inactive user")
        return await self._issue_pair(user.id, family_id=uuid.uuid4())

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.codec.decode(refresh_token, TokenType.REFRESH)
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
        claims = self.codec.decode(refresh_token, TokenType.REFRESH)
        await self.tokens.revoke_if_active(claims.jti)

    async def change_password(self, user: User, data: PasswordChange) -> None:
        current = data.current_password.get_secret_value()
        if not await self.passwords.verify(current, user.hashed_password):
            raise BadRequestError("Current password is incorrect")
        new_hash = await self.passwords.hash(data.new_password.get_secret_value())
        await self._replace_password(user, new_hash)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set the password of the user a reset link was sent to; the link is then used up.

        Unknown, used, expired and superseded links each get their own 400. As with a password
        change, every session of the user ends.
        """
        resets = PasswordResetTokenRepository(self.session)
        stored = await resets.get_by_hash(hash_reset_token(token))
        if stored is None:
            raise InvalidResetTokenError()
        if stored.used_at is not None:
            raise UsedResetTokenError()
        if stored.expires_at <= utc_now():
            raise ExpiredResetTokenError()
        if await resets.is_superseded(stored.user_id, stored.requested_at):
            raise SupersededResetTokenError()
        user = await self.users.get(stored.user_id)
        if user is None or not user.is_active:
            raise InvalidResetTokenError()
        # End the read before the slow hash: no connection or database lock is held meanwhile.
        await self.session.commit()
        new_hash = await self.passwords.hash(new_password)
        # Checked again, atomically: of two confirmations racing with one link, one wins.
        if not await resets.claim(stored.id):
            raise UsedResetTokenError()
        await self._replace_password(user, new_hash)

    async def admin_update(self, user: User, values: dict[str, Any]) -> User:
        """An administrator's change; deactivation also ends every session of the user."""
        losing_power = values.get("is_active") is False or values.get("is_superuser") is False
        if losing_power:
            await self._keep_a_superuser(user)
        deactivating = values.get("is_active") is False and user.is_active
        if deactivating:
            values = {**values, "credentials_changed_at": utc_now()}
        updated = await self.users.update_fields(user, values)
        if deactivating:
            await self.tokens.revoke_all_for_user(user.id)
        return updated

    async def admin_delete(self, user: User) -> None:
        await self._keep_a_superuser(user)
        await self.users.remove(user)

    async def _keep_a_superuser(self, user: User) -> None:
        """409 when `user` is the last active superuser: nobody could administer users then."""
        if (
            user.is_superuser
            and user.is_active
            and not await self.users.other_active_superusers(user)
        ):
            raise LastSuperuserError()

    async def _replace_password(self, user: User, new_hash: str) -> None:
        """The new password; access tokens issued before it are refused, refresh tokens die."""
        await self.users.update_fields(
            user, {"hashed_password": new_hash, "credentials_changed_at": utc_now()}
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
        access = self.codec.create(user_id, TokenType.ACCESS)
        refresh: IssuedToken = self.codec.create(user_id, TokenType.REFRESH)
        await self.tokens.create(
            jti=refresh.claims.jti,
            user_id=user_id,
            family_id=family_id,
            expires_at=refresh.claims.expires_at,
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=int(self.codec.access_lifetime.total_seconds()),
        )
