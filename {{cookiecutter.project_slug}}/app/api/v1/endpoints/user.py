import uuid

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.deps.auth import AuthServiceDep, CurrentSuperuser, CurrentUser
from app.api.v1.deps.db import ReadSessionDep, SessionDep
from app.api.v1.deps.pagination import PageDep
from app.api.v1.deps.rate_limit import limit_per_address
from app.core.exceptions import NotFoundError
from app.core.responses import error_responses
from app.models.user import User
from app.repos.user import UserRepository
from app.schemas.base import Page
from app.schemas.user import PasswordChange, UserAdminUpdate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])

AUTH_ERRORS = (401, 403)


@router.get("/me", responses=error_responses(*AUTH_ERRORS))
async def read_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.patch("/me", responses=error_responses(*AUTH_ERRORS, 409, 422))
async def update_me(data: UserUpdate, user: CurrentUser, session: SessionDep) -> UserRead:
    updated = await UserRepository(session).update_fields(user, data.model_dump(exclude_unset=True))
    return UserRead.model_validate(updated)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, *AUTH_ERRORS, 422, 429),
    dependencies=[Depends(limit_per_address("password_change"))],
)
async def change_password(data: PasswordChange, user: CurrentUser, auth: AuthServiceDep) -> None:
    """Change the password; every refresh token of the user is revoked."""
    await auth.change_password(user, data)


@router.get("", responses=error_responses(*AUTH_ERRORS, 422))
async def list_users(_: CurrentSuperuser, session: ReadSessionDep, page: PageDep) -> Page[UserRead]:
    users, total = await UserRepository(session).list_page(offset=page.offset, limit=page.limit)
    return Page(
        items=[UserRead.model_validate(u) for u in users],
        total=total,
        offset=page.offset,
        limit=page.limit,
    )


async def _get_user_or_404(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


@router.get("/{user_id}", responses=error_responses(*AUTH_ERRORS, 404, 422))
async def read_user(user_id: uuid.UUID, _: CurrentSuperuser, session: ReadSessionDep) -> UserRead:
    return UserRead.model_validate(await _get_user_or_404(session, user_id))


@router.patch("/{user_id}", responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
async def update_user(
    user_id: uuid.UUID,
    data: UserAdminUpdate,
    _: CurrentSuperuser,
    session: SessionDep,
    auth: AuthServiceDep,
) -> UserRead:
    """Deactivating a user (`is_active: false`) also ends their sessions: refresh tokens are
    revoked and earlier access tokens refused, so reactivation does not revive them.
    """
    user = await _get_user_or_404(session, user_id)
    updated = await auth.admin_update(user, data.model_dump(exclude_unset=True))
    return UserRead.model_validate(updated)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*AUTH_ERRORS, 404, 409, 422),
)
async def delete_user(
    user_id: uuid.UUID, _: CurrentSuperuser, session: SessionDep, auth: AuthServiceDep
) -> None:
    {%- if cookiecutter.use_b2_storage %}
    """409 for the last active superuser, and for a user who still owns files (delete those
    first, so no object is left in B2 without its row).
    """
    {%- else %}
    """409 for the last active superuser: nobody could administer users then."""
    {%- endif %}
    user = await _get_user_or_404(session, user_id)
    await auth.admin_delete(user)
