from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from app.api.v1.deps.db import SessionDep
from app.core.auth import TokenType, decode_token
from app.core.exceptions import AuthenticationError, PermissionDeniedError
from app.models.user import User
from app.repos.user import UserRepository

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_current_user(
    session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    if token is None:
        raise AuthenticationError("Not authenticated")
    claims = decode_token(token, TokenType.ACCESS)
    user = await UserRepository(session).get(claims.subject)
    # End the lookup's transaction: whatever slow work the endpoint does next holds no pooled
    # connection or database lock.
    await session.commit()
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
