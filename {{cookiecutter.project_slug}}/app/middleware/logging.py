"""Pure ASGI middleware: request id, one log line per request, security headers, and the
last-resort 500 (Starlette answers unhandled errors outside user middleware, which would lose
the request id and headers).

It wraps every request, so it stays cheap: raw header tuples, no Request objects, and the
request line written by what `setup_logging` returned for it (nothing when the level leaves it
out).
"""

import random
import re
import time

from loguru import logger
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logger import RequestLog
from app.core.responses import error_content

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# Control characters (C0, DEL, C1, line and paragraph separators) shown as escapes, so that a
# client cannot end a log line and forge the next one.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def printable(text: str) -> str:
    return text.translate(_ESCAPES)


def _request_id(scope: Scope) -> bytes:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    # An id, not a secret: the process-wide PRNG avoids a system call per request.
    return f"{random.getrandbits(128):032x}".encode()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool, log_request: RequestLog | None) -> None:
        self.app = app
        self.headers = [*_SECURITY_HEADERS, _HSTS] if hsts else list(_SECURITY_HEADERS)
        self.log_request = log_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        response_headers = [(b"x-request-id", request_id), *self.headers]
        status_code = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), *response_headers]
            await send(message)

        request_id_text = request_id.decode("ascii")
        with logger.contextualize(request_id=request_id_text):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                logger.exception(
                    "Unhandled error in {} {}", scope["method"], printable(scope["path"])
                )
                if response_started:
                    raise
                response = JSONResponse(
                    error_content("Internal server error", "INTERNAL_ERROR"), status_code=500
                )
                await response(scope, receive, send_with_headers)
            finally:
                if self.log_request is not None:
                    self.log_request(
                        request_id_text,
                        scope["method"],
                        printable(scope["path"]),
                        status_code,
                        round((time.perf_counter() - started) * 1000, 1),
                    )
