"""The application's exception hierarchy; each maps to one HTTP status and error code."""

from typing import Any


class AppError(Exception):
    status_code: int = 500
    error_code: str = "INTERNAL_ERROR"
    detail: str = "Internal server error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or type(self).detail
        self.headers = headers
        # More fields for the error body, e.g. OAuth2's `error` on a failed login.
        self.extra: dict[str, Any] = {}
        super().__init__(self.detail)


class BadRequestError(AppError):
    status_code = 400
    error_code = "BAD_REQUEST"
    detail = "Bad request"


class InvalidResetTokenError(BadRequestError):
    error_code = "RESET_TOKEN_INVALID"
    detail = "This password reset link is not valid"


class ExpiredResetTokenError(BadRequestError):
    error_code = "RESET_TOKEN_EXPIRED"
    detail = "This password reset link has expired; ask for a new one"


class UsedResetTokenError(BadRequestError):
    error_code = "RESET_TOKEN_USED"
    detail = "This password reset link was already used; ask for a new one"


class SupersededResetTokenError(BadRequestError):
    error_code = "RESET_TOKEN_SUPERSEDED"
    detail = "A newer password reset link was sent; use the latest one"


class NotFoundError(AppError):
    status_code = 404
    error_code = "NOT_FOUND"
    detail = "Not found"


class ConflictError(AppError):
    status_code = 409
    error_code = "CONFLICT"
    detail = "Conflict"


class LastSuperuserError(ConflictError):
    error_code = "LAST_SUPERUSER"
    detail = (
        "This is the last active superuser: make another user a superuser first "
        "(or use `python -m app.cli create-superuser`)"
    )


class AuthenticationError(AppError):
    status_code = 401
    error_code = "NOT_AUTHENTICATED"
    detail = "Could not validate credentials"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class PermissionDeniedError(AppError):
    status_code = 403
    error_code = "FORBIDDEN"
    detail = "Not enough permissions"


class InvalidInputError(AppError):
    status_code = 422
    error_code = "VALIDATION_ERROR"
    detail = "Invalid input"


class PayloadTooLargeError(AppError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"
    detail = "Payload too large"


class UnsupportedMediaTypeError(AppError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    detail = "Unsupported media type"


class RateLimitedError(AppError):
    status_code = 429
    error_code = "RATE_LIMITED"
    detail = "Too many requests; try again later"


class BadGatewayError(AppError):
    status_code = 502
    error_code = "BAD_GATEWAY"
    detail = "An upstream service failed"


class ServiceUnavailableError(AppError):
    status_code = 503
    error_code = "SERVICE_UNAVAILABLE"
    detail = "Service temporarily unavailable"


class SchemaOutOfDateError(ServiceUnavailableError):
    """The database is not migrated for this code: retrying does not help until an operator
    runs the migrations, so no `Retry-After`.
    """

    error_code = "SCHEMA_OUT_OF_DATE"
    detail = "The database is not migrated for this version of the service"
