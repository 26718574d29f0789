"""The error body every failure answers with, and its OpenAPI documentation."""

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from app.core.exceptions import AppError

ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed for this user",
    404: "Not found",
    409: "Conflicts with existing data",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Rate limit reached: retry after `Retry-After` seconds",
    500: "Unexpected server error",
    502: "An upstream service failed",
    503: "A dependency is unavailable",
}


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong; validation errors list each failing field"
    )
    error_code: str = Field(examples=["NOT_FOUND"])
    timestamp: datetime


class OAuth2ErrorResponse(ErrorResponse):
    """A failed token request also carries the OAuth2 fields (RFC 6749, section 5.2), which
    OAuth2 clients such as Swagger UI's Authorize dialog show.
    """

    error: str = Field(examples=["invalid_grant"])
    error_description: str = Field(examples=["Incorrect username or password"])


def error_responses(
    *status_codes: int, model: type[ErrorResponse] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: documents each status code with the error body."""
    return {
        code: {"model": model, "description": ERROR_DESCRIPTIONS[code]} for code in status_codes
    }


def error_examples(status_code: int, *errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a status that several errors share: one named example each."""
    examples = {
        error.error_code: {
            "summary": error.detail,
            "value": {
                "detail": error.detail,
                "error_code": error.error_code,
                "timestamp": "2026-11-28T09:30:00Z",
            },
        }
        for error in errors
    }
    return {
        status_code: {
            "model": ErrorResponse,
            "description": ERROR_DESCRIPTIONS[status_code],
            "content": {"application/json": {"examples": examples}},
        }
    }


def error_content(
    detail: str | list[dict[str, Any]], error_code: str, **extra: Any
) -> dict[str, Any]:
    """The JSON error body: `{"detail", "error_code", "timestamp"}` (and any `extra` fields)."""
    return {
        "detail": detail,
        "error_code": error_code,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        **extra,
    }
