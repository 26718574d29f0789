"""Every error becomes the same JSON body: `{"detail", "error_code", "timestamp"}`."""

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.exceptions import AppError, SchemaOutOfDateError
from app.core.migrations import SchemaCheck, is_missing_schema
from app.core.responses import error_content

# Errors that mean "the database cannot be reached right now", not "the query is wrong".
UNREACHABLE_DATABASE_ERRORS = (OperationalError, InterfaceError)

HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "NOT_AUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def app_error_response(exc: AppError) -> JSONResponse:
    """The response for an application error: its status, headers and the error body."""
    return JSONResponse(
        error_content(exc.detail, exc.error_code, **exc.extra),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
    return app_error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers 400 for a JSON body that is not UTF-8: malformed JSON, so a 422.
        errors = [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]
        return JSONResponse(error_content(errors, "VALIDATION_ERROR"), status_code=422)
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        error_content(str(exc.detail), code), status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    errors = [
        {key: value for key, value in error.items() if key in {"type", "loc", "msg"}}
        for error in exc.errors()
    ]
    return JSONResponse(
        error_content(jsonable_encoder(errors), "VALIDATION_ERROR"), status_code=422
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    {%- if cookiecutter.database == "postgresql" %}
    """Pool exhausted, server down or restarted: retry later.

    A refused connection reaches here as the builtin ConnectionError, before SQLAlchemy can
    wrap it. A missing table or column in a database that is not migrated for this code is no
    outage: 503 without `Retry-After`, until an operator migrates it. Any other database error
    is a bug and stays a 500.
    """
    {%- else %}
    """Pool exhausted, database file locked past the busy timeout or not there: retry later.

    A missing table or column in a database that is not migrated for this code is no outage:
    503 without `Retry-After`, until an operator migrates it. Any other database error is a
    bug and stays a 500.
    """
    {%- endif %}
    if isinstance(exc, DBAPIError) and is_missing_schema(exc):
        schema_check: SchemaCheck = request.app.state.schema_check
        if await schema_check.explains_missing_schema(request.app.state.database):
            return app_error_response(SchemaOutOfDateError())
        raise exc
    if (
        isinstance(exc, DBAPIError)
        and not isinstance(exc, UNREACHABLE_DATABASE_ERRORS)
        and not exc.connection_invalidated
    ):
        raise exc
    logger.opt(exception=exc).warning("Database unavailable")
    return JSONResponse(
        error_content("The database is temporarily unavailable", "DATABASE_UNAVAILABLE"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error_class in (PoolTimeoutError, DBAPIError, ConnectionError):
        app.add_exception_handler(error_class, _database_unavailable)
