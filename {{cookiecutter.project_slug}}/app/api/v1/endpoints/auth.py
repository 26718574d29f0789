from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.v1.deps.db import SessionDep
from app.core.responses import error_responses
from app.schemas.token import RefreshRequest, TokenPair
from app.schemas.user import UserCreate, UserRead
from app.services.auth import AuthService

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=error_responses(409, 422),
)
async def signup(data: UserCreate, session: SessionDep) -> UserRead:
    user = await AuthService(session).signup(data)
    return UserRead.model_validate(user)


@router.post("/login", responses=error_responses(401, 403, 422))
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep
) -> TokenPair:
    """OAuth2 password flow; `username` may be the username or the email."""
    return await AuthService(session).login(form.username, form.password)


@router.post("/refresh", responses=error_responses(401, 403, 422))
async def refresh(data: RefreshRequest, session: SessionDep) -> TokenPair:
    """Rotate a refresh token: it is dead afterwards, and reusing it revokes its whole family."""
    return await AuthService(session).refresh(data.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 422))
async def logout(data: RefreshRequest, session: SessionDep) -> None:
    await AuthService(session).logout(data.refresh_token)
