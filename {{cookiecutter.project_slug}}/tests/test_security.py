"""What a security review asked for: no secret in logs, no forged log lines, bounded bodies,
uncacheable tokens, a clock-skew allowance, sessions that end with the credentials, and no
look-alike accounts.
"""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import jwt
import pytest
from httpx import ASGITransport, AsyncClient

from app.core.auth import JWT_ALGORITHM
from app.core.clock import utc_now
from app.main import create_app
from tests.helpers import (
    DEFAULT_PASSWORD,
    TEST_SETTINGS,
    UserFactory,
    auth_headers,
    login_tokens,
    make_settings,
)

SIGNUP = {
    "username": "alice",
    "email": "alice@example.com",
    "first_name": "Alice",
    "last_name": "Liddell",
    "password": "a sound password",
}


# --- Logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("log_json", [False, True], ids=["text", "json"])
async def test_failing_requests_never_log_the_password(
    capsys: pytest.CaptureFixture[str], unreachable_database_url: str, log_json: bool
) -> None:
    """The database is down: login and signup answer 503 and their tracebacks are logged."""
    settings = make_settings(
        database_url=unreachable_database_url, log_json=log_json, log_level="INFO"
    )
    app = create_app(settings)
    try:
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
        ):
            login = await client.post(
                "/api/v1/auth/login",
                data={"username": "someone", "password": "login-password-in-the-clear"},
            )
            signup = await client.post(
                "/api/v1/auth/signup", json={**SIGNUP, "password": "signup-password-in-the-clear"}
            )
    finally:
        create_app(TEST_SETTINGS)  # restore the test logging set-up
    assert (login.status_code, signup.status_code) == (503, 503)
    logged = capsys.readouterr().err
    assert "Traceback" in logged or '"exception"' in logged  # the error was logged in full
    assert "login-password-in-the-clear" not in logged
    assert "signup-password-in-the-clear" not in logged


async def test_a_path_cannot_forge_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(make_settings(log_json=False, log_level="INFO"))
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
            await client.get("/health%0a2026-01-01 00:00:00.000 | CRITICAL | forged%0d%e2%80%a8x")
    finally:
        create_app(TEST_SETTINGS)
    lines = capsys.readouterr().err.splitlines()
    assert not [line for line in lines if "forged" in line and not line.startswith("20")]
    [request_line] = [line for line in lines if "forged" in line and "app.middleware" in line]
    assert "/health\\x0a2026-01-01" in request_line
    assert "\\x0dx" not in request_line
    assert "\\x0d\\u2028x" in request_line


# --- Bodies -------------------------------------------------------------------------------


class KibibyteStream:
    """A request body of `count` KiB chunks that counts how many the server pulled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield b"x" * 1024


async def test_an_announced_oversized_body_is_refused_before_it_is_read(
    client: AsyncClient,
) -> None:
    body = KibibyteStream(1000)
    response = await client.post(
        "/api/v1/auth/logout",
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(300 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert body.pulled <= 1


async def test_a_streamed_body_is_cut_off_at_the_limit(client: AsyncClient) -> None:
    body = KibibyteStream(1000)
    response = await client.post(
        "/api/v1/auth/signup", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert body.pulled <= TEST_SETTINGS.max_body_bytes // 1024 + 2


async def test_an_unauthenticated_large_request_gets_no_further_than_its_length(
    client: AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/users/me/password",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
    )
    assert response.status_code == 413


async def test_a_body_within_the_limit_is_served(client: AsyncClient) -> None:
    padded = {**SIGNUP, "first_name": "A" * 100}
    response = await client.post("/api/v1/auth/signup", json=padded)
    assert response.status_code == 201, response.text


def exactly_the_limit(account: dict[str, str]) -> bytes:
    """The account as JSON, padded with whitespace (still valid JSON) to MAX_BODY_BYTES."""
    body = json.dumps(account).encode()
    return body.ljust(TEST_SETTINGS.max_body_bytes)


async def test_a_body_of_exactly_the_limit_is_served(client: AsyncClient) -> None:
    """The limit is the largest body allowed, announced by its length or streamed."""
    announced = exactly_the_limit(SIGNUP)
    response = await client.post(
        "/api/v1/auth/signup", content=announced, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text

    streamed = exactly_the_limit({**SIGNUP, "username": "bob", "email": "bob@example.com"})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(streamed), 1024):
            yield streamed[start : start + 1024]

    response = await client.post(
        "/api/v1/auth/signup", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


# --- Tokens -------------------------------------------------------------------------------


async def test_token_responses_are_not_cached(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    login = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    for response in (login, refresh):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


def token(user_id: uuid.UUID, *, issued_in: float, expires_in: float) -> str:
    now = utc_now()
    return jwt.encode(
        {
            "sub": str(user_id),
            "type": "access",
            "jti": str(uuid.uuid4()),
            "iat": (now + timedelta(seconds=issued_in)).timestamp(),
            "exp": now + timedelta(seconds=expires_in),
        },
        TEST_SETTINGS.secret_key.get_secret_value(),
        JWT_ALGORITHM,
    )


@pytest.mark.parametrize(
    ("issued_in", "expires_in", "status"),
    [
        (2, 600, 200),  # a replica whose clock is 2 s ahead
        (-600, -5, 200),  # expired 5 s ago: within the leeway
        (120, 600, 401),  # issued in the future, beyond the leeway
        (-600, -120, 401),  # expired beyond the leeway
    ],
)
async def test_clock_skew_is_allowed_within_the_leeway(
    client: AsyncClient, make_user: UserFactory, issued_in: int, expires_in: int, status: int
) -> None:
    assert TEST_SETTINGS.token_leeway_seconds == 30
    user = await make_user()
    access = token(user.id, issued_in=issued_in, expires_in=expires_in)
    headers = {"Authorization": f"Bearer {access}"}
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == status, response.text


async def test_a_password_change_ends_earlier_access_tokens(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    old = await login_tokens(client, user.username, DEFAULT_PASSWORD)
    old_headers = {"Authorization": f"Bearer {old['access_token']}"}
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "another sound one"},
        headers=old_headers,
    )
    assert changed.status_code == 204
    refused = await client.get("/api/v1/users/me", headers=old_headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Token issued before the credentials changed"
    new = await login_tokens(client, user.username, "another sound one")
    fresh = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert fresh.status_code == 200


async def test_deactivation_ends_every_session_for_good(
    client: AsyncClient, make_user: UserFactory
) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    old = await login_tokens(client, user.username, DEFAULT_PASSWORD)
    for is_active in (False, True):
        response = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": is_active}, headers=auth_headers(admin)
        )
        assert response.status_code == 200, response.text
    # Reactivated, the user logs in again; what they held before stays dead.
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
    )
    assert refresh.status_code == 401
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {old['access_token']}"}
    )
    assert me.status_code == 401
    await login_tokens(client, user.username, DEFAULT_PASSWORD)


# --- Look-alike accounts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "look_alike"),
    [
        ("email", "\uff41lice@example.com"),  # full-width a: the same address after NFKC
        ("username", "\uff41lice"),
    ],
    ids=["full-width-email", "full-width-username"],
)
async def test_compatibility_forms_meet_the_original(
    client: AsyncClient, field: str, look_alike: str
) -> None:
    assert (await client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    other = {**SIGNUP, "username": "someone", "email": "someone@example.com", field: look_alike}
    response = await client.post("/api/v1/auth/signup", json=other)
    assert response.status_code == 409, response.text


async def test_a_mixed_script_address_is_refused(client: AsyncClient) -> None:
    assert (await client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    cyrillic_a = {**SIGNUP, "username": "someone", "email": "\u0430lice@example.com"}
    response = await client.post("/api/v1/auth/signup", json=cyrillic_a)
    assert response.status_code == 422
    assert "mixes alphabets" in json.dumps(response.json()["detail"])


async def test_a_single_script_address_is_welcome(client: AsyncClient) -> None:
    cyrillic = {**SIGNUP, "username": "ivan", "email": "\u0438\u0432\u0430\u043d@example.com"}
    assert (await client.post("/api/v1/auth/signup", json=cyrillic)).status_code == 201


async def test_login_finds_the_account_by_its_compatibility_form(
    client: AsyncClient, make_user: UserFactory
) -> None:
    await make_user(username="alice", email="alice@example.com")
    await login_tokens(client, "\uff41lice", DEFAULT_PASSWORD)
