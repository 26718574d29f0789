"""Pure ASGI middleware: request id, one log line per request, security headers, and the
last-resort 500 (Starlette answers unhandled errors outside user middleware, which would lose
the request id and headers)."""

import re
import time
import uuid

from loguru import logger
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.responses import error_content

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = dict(_SECURITY_HEADERS)
        if hsts:
            self.headers[_HSTS[0]] = _HSTS[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status_code = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        with logger.contextualize(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                logger.exception("Unhandled error in {} {}", scope["method"], scope["path"])
                if response_started:
                    raise
                response = JSONResponse(
                    error_content("Internal server error", "INTERNAL_ERROR"), status_code=500
                )
                await response(scope, receive, send_with_headers)
            finally:
                fields = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
                logger.bind(**fields).info("{method} {path} {status} {duration_ms}ms", **fields)
