"""The password-reset link: issued for a request by a job, and mailed.

The token is random (`secrets`), sent only in the mail and stored only as its SHA-256 hash.
Confirming it is `AuthService.reset_password`.
"""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utc_now
from app.core.config import Settings
from app.models.password_reset_token import PasswordResetToken
from app.models.user import User
from app.repos.password_reset_token import PasswordResetTokenRepository
from app.repos.user import UserRepository
from app.services.email import Email, EmailTemplates

TOKEN_BYTES = 32


def hash_reset_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedReset:
    token_id: uuid.UUID
    token: str
    user: User


class PasswordResets:
    """The steps of the reset-mail job, each safe to run again for the same request."""

    def __init__(self, session: AsyncSession, *, lifetime: timedelta) -> None:
        self.session = session
        self.lifetime = lifetime
        self.users = UserRepository(session)
        self.tokens = PasswordResetTokenRepository(session)

    async def issue(
        self, *, email: str, request_id: uuid.UUID, requested_at: datetime
    ) -> IssuedReset | None:
        """A new token for the request, or None when no mail is due: no active account uses
        the address, the user asked again since, or this request's mail already went out.

        A request whose mail did not go out (its job died or failed) gets a new token in its
        own row: whatever link an earlier attempt may have sent stops working.
        """
        user = await self.users.get_by_login(email)
        if user is None or not user.is_active:
            return None
        if await self.tokens.is_superseded(user.id, requested_at):
            return None
        stored = await self.tokens.get_by_request(request_id)
        if stored is not None and stored.sent_at is not None:
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        values = {"token_hash": hash_reset_token(token), "expires_at": utc_now() + self.lifetime}
        if stored is None:
            stored = await self.tokens.add(
                PasswordResetToken(
                    user_id=user.id, request_id=request_id, requested_at=requested_at, **values
                )
            )
        else:
            stored = await self.tokens.update(stored, values)
        return IssuedReset(token_id=stored.id, token=token, user=user)

    async def mark_sent(self, token_id: uuid.UUID) -> None:
        stored = await self.tokens.get(token_id)
        if stored is not None:
            await self.tokens.update(stored, {"sent_at": utc_now()})


def reset_link(settings: Settings, token: str) -> str:
    return f"{settings.frontend_url}{settings.password_reset_path}?{urlencode({'token': token})}"


def reset_email(settings: Settings, templates: EmailTemplates, issued: IssuedReset) -> Email:
    return templates.render(
        "password_reset",
        to=issued.user.email,
        project_name=settings.project_name,
        first_name=issued.user.first_name,
        username=issued.user.username,
        link=reset_link(settings, issued.token),
        valid_minutes=settings.password_reset_token_expire_minutes,
    )
