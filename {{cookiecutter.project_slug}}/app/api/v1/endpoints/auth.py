from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status

from app.api.v1.deps.auth import AuthServiceDep
from app.api.v1.deps.jobs import JobsDep
from app.api.v1.deps.rate_limit import RateLimiterDep, limit_per_address
from app.core.exceptions import (
    AuthenticationError,
    ExpiredResetTokenError,
    InvalidResetTokenError,
    PermissionDeniedError,
    SupersededResetTokenError,
    UsedResetTokenError,
)
from app.core.rate_limit import account_key, client_address
from app.core.responses import OAuth2ErrorResponse, error_examples, error_responses
from app.schemas.password_reset import (
    PasswordResetAccepted,
    PasswordResetConfirm,
    PasswordResetRequest,
)
from app.schemas.token import RefreshRequest, TokenPair
from app.schemas.user import UserCreate, UserRead
from app.services.auth import LoginLimits

router = APIRouter(prefix="/auth", tags=["auth"])


async def no_store(response: Response) -> None:
    """Token responses must not be cached by browsers or proxies (RFC 6749, section 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=error_responses(409, 422, 429),
    dependencies=[Depends(limit_per_address("signup"))],
)
async def signup(data: UserCreate, auth: AuthServiceDep) -> UserRead:
    user = await auth.signup(data)
    return UserRead.model_validate(user)


@router.post(
    "/login",
    responses={
        **error_responses(401, 403, model=OAuth2ErrorResponse),
        **error_responses(422, 429),
    },
    dependencies=[Depends(no_store)],
)
async def login(
    # Plain form fields rather than FastAPI's OAuth2PasswordRequestForm class, whose
    # constructor FastAPI would run in the thread pool on every attempt.
    username: Annotated[str, Form(description="The username or the e-mail address")],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    request: Request,
    auth: AuthServiceDep,
    limiter: RateLimiterDep,
) -> TokenPair:
    """OAuth2 password flow; `username` may be the username or the email.

    Failed attempts are limited per account and per client address; a success costs nothing.
    """
    limits = LoginLimits(limiter, username, client_address(request.scope))
    try:
        return await auth.login(username, password, limits)
    except (AuthenticationError, PermissionDeniedError) as exc:
        exc.extra = {"error": "invalid_grant", "error_description": exc.detail}
        raise


@router.post(
    "/refresh",
    responses=error_responses(401, 403, 422, 429),
    dependencies=[Depends(limit_per_address("refresh")), Depends(no_store)],
)
async def refresh(data: RefreshRequest, auth: AuthServiceDep) -> TokenPair:
    """Rotate a refresh token: it is dead afterwards, and reusing it revokes its whole family."""
    return await auth.refresh(data.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 422))
async def logout(data: RefreshRequest, auth: AuthServiceDep) -> None:
    await auth.logout(data.refresh_token)


@router.post(
    "/password-reset/request",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(422, 429{% if cookiecutter.use_redis %}, 503{% endif %}),
    dependencies=[Depends(limit_per_address("password_reset_address"))],
)
async def request_password_reset(
    data: PasswordResetRequest, limiter: RateLimiterDep, jobs: JobsDep
) -> PasswordResetAccepted:
    """Mail a single-use link to reset the password of the account that uses this address.

    The answer is the same, and as quick, whether such an account exists or not: the lookup
    and the mail happen in a background job. Limited per address asked for and per client
    address; asking again makes the links sent before stop working.
    """
    await limiter.hit("password_reset_account", account_key(data.email))
    await jobs.request_password_reset(data.email)
    return PasswordResetAccepted()


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **error_examples(
            400,
            InvalidResetTokenError,
            ExpiredResetTokenError,
            UsedResetTokenError,
            SupersededResetTokenError,
        ),
        **error_responses(422, 429),
    },
    dependencies=[Depends(limit_per_address("password_reset_confirm"))],
)
async def confirm_password_reset(data: PasswordResetConfirm, auth: AuthServiceDep) -> None:
    """Set a new password with the token from the reset link.

    Every session of the user ends: refresh tokens are revoked, and access tokens issued
    before are refused.
    """
    await auth.reset_password(data.token, data.new_password.get_secret_value())
