"""Request body limits, enforced before and while the body is read.

A body announced larger than its route's limit (`Content-Length`) is refused with 413 before
a byte of it is read; a streamed body (chunked, or lying about its length) is cut off with 413
as soon as it passes the limit. Nothing beyond the limit is buffered or spooled to disk.
"""

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.responses import error_content


class BodyTooLargeError(HTTPException):
    """Raised from `receive` once a body passes its limit. An HTTPException, so the framework
    lets it through its body parsing and the app's handlers answer 413 with the error body.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        route_limits: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        """`route_limits`: (method, path, limit) for the routes that take larger bodies."""
        self.app = app
        self.default_limit = default_limit
        self.route_limits = {(method, path): limit for method, path, limit in route_limits}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get((scope["method"], scope["path"]), self.default_limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = JSONResponse(
        error_content(f"The request body is larger than {limit} bytes", "PAYLOAD_TOO_LARGE"),
        status_code=413,
        # The unread body is still on its way: the connection cannot carry another request.
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
