from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from app.core import db
from app.core.auth import TokenType, decode_token
from app.core.exceptions import AuthenticationError, PermissionDeniedError
from app.models.user import User
from app.repos.user import UserReader

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_current_user(token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    """The token's user, read fresh on every request so deactivation takes effect at once.

    The read needs no request session: endpoints that only read the user open none, and no
    connection or lock is held while the endpoint runs.
    """
    if token is None:
        raise AuthenticationError("Not authenticated")
    claims = decode_token(token, TokenType.ACCESS)
    async with db.read_connection() as connection:
        user = await UserReader(connection).get(claims.subject)
    if user is None:
        raise AuthenticationError("User no longer exists")
    if not user.is_active:
        raise PermissionDeniedError("Inactive user")
    return user


async def get_current_superuser(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_superuser:
        raise PermissionDeniedError()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentSuperuser = Annotated[User, Depends(get_current_superuser)]
