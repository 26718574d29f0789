"""Refuses a login attempt that is known to be over its limit before routing.

A storm of wrong passwords against one account is answered 429 from the rate limiter's memory
of used-up keys, without FastAPI's routing, dependencies, a database session or a round trip
to the limit store: a refused attempt costs a small fraction of a served request. Anything
not known to be blocked goes on to the login route, which checks and counts as usual.
"""

from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.error_handlers import app_error_response
from app.core.rate_limit import RateLimiter, account_key, client_address

FORM_TYPE = b"application/x-www-form-urlencoded"


class LoginGuardMiddleware:
    def __init__(self, app: ASGIApp, *, login_path: str) -> None:
        self.app = app
        self.login_path = login_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.login_path
            or not _is_form(scope)
        ):
            await self.app(scope, receive, send)
            return
        # The body is small (the body limit runs first): read it, then hand it on unchanged.
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        limiter: RateLimiter = scope["app"].state.rate_limiter
        username = parse_qs(body.decode("utf-8", "replace")).get("username", [""])[0]
        blocked = limiter.known_blocked(
            "login_account", account_key(username)
        ) or limiter.known_blocked("login_address", client_address(scope))
        if blocked is not None:
            error = blocked.error()
            error.headers = {**(error.headers or {}), "Cache-Control": "no-store"}
            await app_error_response(error)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _is_form(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower() == FORM_TYPE
    return False
