from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.api.v1.deps.db import DatabaseDep, SessionDep
from app.core.auth import PasswordHasher, TokenCodec, TokenType
from app.core.exceptions import AuthenticationError, PermissionDeniedError
from app.models.user import User
from app.repos.user import UserReader
from app.services.auth import AuthService

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_tokens(request: Request) -> TokenCodec:
    tokens: TokenCodec = request.app.state.tokens
    return tokens


async def get_passwords(request: Request) -> PasswordHasher:
    passwords: PasswordHasher = request.app.state.passwords
    return passwords


TokensDep = Annotated[TokenCodec, Depends(get_tokens)]
PasswordsDep = Annotated[PasswordHasher, Depends(get_passwords)]


async def get_current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)], database: DatabaseDep, tokens: TokensDep
) -> User:
    """The token's user, read fresh on every request so deactivation takes effect at once.

    The read needs no request session: endpoints that only read the user open none, and no
    connection or lock is held while the endpoint runs.
    """
    if token is None:
        raise AuthenticationError("Not authenticated")
    claims = tokens.decode(token, TokenType.ACCESS)
    user = await UserReader(database).get(claims.subject)
    if user is None:
        raise AuthenticationError("User no longer exists")
    if not user.is_active:
        raise PermissionDeniedError("Inactive user")
    # After a password change or a deactivation; reactivation does not revive such tokens.
    if user.credentials_changed_at is not None and claims.issued_at < user.credentials_changed_at:
        raise AuthenticationError("Token issued before the credentials changed")
    return user


async def get_current_superuser(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_superuser:
        raise PermissionDeniedError()
    return user


async def get_auth_service(
    session: SessionDep, passwords: PasswordsDep, tokens: TokensDep
) -> AuthService:
    return AuthService(session, passwords, tokens)


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentSuperuser = Annotated[User, Depends(get_current_superuser)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
