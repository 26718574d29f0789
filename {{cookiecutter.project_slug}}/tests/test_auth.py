import asyncio

import bcrypt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import field_sizes
from app.core.auth import PasswordHasher
from tests.helpers import DEFAULT_PASSWORD, UserFactory, login_tokens

SIGNUP = {
    "username": "Grace",
    "email": "Grace@Example.com",
    "first_name": "Grace",
    "last_name": "Hopper",
    "password": "a sound password",
}
USER_FIELDS = {
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
}


async def test_signup_returns_the_user_without_secrets(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/signup", json=SIGNUP)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["username"] == "grace"
    assert body["email"] == "grace@example.com"
    assert body["is_active"] is True
    assert body["is_superuser"] is False
    assert body["created_at"].endswith("Z")
    assert "password" not in response.text


@pytest.mark.parametrize(
    "changes",
    [
        {"username": "someone-else"},
        {"email": "someone@else.org"},
    ],
    ids=["same-email-other-case", "same-username-other-case"],
)
async def test_signup_conflicts_are_case_insensitive(
    client: AsyncClient, changes: dict[str, str]
) -> None:
    assert (await client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    duplicate = {**SIGNUP, **changes}
    duplicate["email"] = duplicate["email"].upper()
    duplicate["username"] = duplicate["username"].upper()
    response = await client.post("/api/v1/auth/signup", json=duplicate)
    assert response.status_code == 409
    assert response.json()["error_code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("short", 422),
        ("x" * 7, 422),
        ("x" * 8, 201),
        ("x" * 72, 201),
        ("x" * 73, 422),
        ("é" * 36, 201),  # 36 characters, 72 bytes
        ("é" * 37, 422),  # 37 characters, but 74 bytes: over bcrypt's limit
    ],
    ids=["5-chars", "7-chars", "8-chars", "72-bytes", "73-bytes", "72-utf8-bytes", "74-utf8-bytes"],
)
async def test_password_policy_counts_utf8_bytes(
    client: AsyncClient, password: str, status: int
) -> None:
    response = await client.post("/api/v1/auth/signup", json={**SIGNUP, "password": password})
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["error_code"] == "VALIDATION_ERROR"
        assert "input" not in response.json()["detail"][0]  # never echo a password back


@pytest.mark.parametrize(
    "changes",
    [
        {"email": "not-an-email"},
        {"username": "no spaces allowed"},
        {"username": "ab"},
        {"first_name": ""},
        {"unexpected": "field"},
        {"first_name": "A\x00"},  # PostgreSQL text cannot hold NUL
    ],
)
async def test_signup_rejects_invalid_fields(client: AsyncClient, changes: dict[str, str]) -> None:
    response = await client.post("/api/v1/auth/signup", json={**SIGNUP, **changes})
    assert response.status_code == 422
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_login_with_username_or_email(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    for login_name in (user.username, user.email.upper()):
        tokens = await login_tokens(client, login_name)
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == 30 * 60
        me = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.json()["id"] == str(user.id)


@pytest.mark.parametrize("login_name", ["user0", "nobody"], ids=["wrong-password", "unknown-user"])
async def test_bad_credentials_get_the_same_answer(
    client: AsyncClient, make_user: UserFactory, login_name: str
) -> None:
    await make_user()
    response = await client.post(
        "/api/v1/auth/login", data={"username": login_name, "password": "not the password"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # The usual error body, plus the OAuth2 fields that Swagger UI's Authorize dialog shows.
    assert response.json() == {
        "detail": "Incorrect username or password",
        "error_code": "NOT_AUTHENTICATED",
        "timestamp": response.json()["timestamp"],
        "error": "invalid_grant",
        "error_description": "Incorrect username or password",
    }


async def test_login_name_with_a_nul_character_is_401_not_500(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", data={"username": "ad\x00min", "password": "whatever it is"}
    )
    assert response.status_code == 401


async def test_login_with_an_overlong_password_is_401_not_500(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    response = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": "é" * 100}
    )
    assert response.status_code == 401


async def test_inactive_user_cannot_log_in(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user(is_active=False)
    response = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 403
    assert response.json()["error_code"] == "FORBIDDEN"


async def test_refresh_rotates_the_pair(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    first = await login_tokens(client, user.username)
    # Back to back: the login's token must already be committed when its response arrives.
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert again.status_code == 200


async def test_reusing_a_rotated_token_revokes_the_family(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await login_tokens(client, user.username)
    other_session = await login_tokens(client, user.username)
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    newest = rotated.json()["refresh_token"]

    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    assert reuse.json()["detail"] == "Refresh token has been revoked"
    # The whole family is dead, the newest token included ...
    newest_response = await client.post("/api/v1/auth/refresh", json={"refresh_token": newest})
    assert newest_response.status_code == 401
    # ... but another login's family is not.
    untouched = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert untouched.status_code == 200


async def test_logout_kills_the_refresh_token(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    tokens = await login_tokens(client, user.username)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401


async def test_refresh_refused_for_deactivated_and_deleted_users(
    client: AsyncClient, make_user: UserFactory, session: AsyncSession
) -> None:
    inactive, deleted = await make_user(), await make_user()
    inactive_tokens = await login_tokens(client, inactive.username)
    deleted_tokens = await login_tokens(client, deleted.username)
    inactive.is_active = False
    await session.delete(deleted)
    await session.flush()

    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": inactive_tokens["refresh_token"]}
    )
    assert response.status_code == 403
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": deleted_tokens["refresh_token"]}
    )
    assert response.status_code == 401


async def test_hashing_runs_off_the_event_loop() -> None:
    """While a slow hash runs, the event loop keeps serving other coroutines."""
    passwords = PasswordHasher(rounds=10, concurrency=1)  # tens of milliseconds
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    hashed = await passwords.hash("a sound password")
    task.cancel()
    assert await passwords.verify("a sound password", hashed)
    # On the loop, the ticker could not have run at all during the hash.
    assert ticks > 100


@pytest.mark.parametrize(
    ("who", "password"),
    [
        ("unknown", "a sound password"),
        ("known", "x" * (field_sizes.PASSWORD_MAX_BYTES + 1)),
    ],
    ids=["unknown-user", "over-long-password"],
)
async def test_a_login_that_cannot_succeed_still_costs_one_check(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
    who: str,
    password: str,
) -> None:
    """Without the dummy check, the answer's timing would tell which accounts exist."""
    user = await make_user()
    username = user.username if who == "known" else "nobody-by-this-name"
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def spy(candidate: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(candidate, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    response = await client.post(
        "/api/v1/auth/login", data={"username": username, "password": password}
    )
    assert response.status_code == 401
    assert checked == [app.state.passwords.dummy_hash()]
