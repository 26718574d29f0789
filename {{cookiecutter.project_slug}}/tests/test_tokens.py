"""Every way an access token can be wrong answers 401 with `WWW-Authenticate: Bearer`."""

import uuid
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import auth as auth_module
from app.core.auth import JWT_ALGORITHM, TokenType
from app.core.clock import utc_now
from app.models import User
from tests.helpers import DEFAULT_PASSWORD, TEST_SETTINGS, TOKENS, UserFactory, auth_headers

SECRET = TEST_SETTINGS.secret_key.get_secret_value()


def claims_for(user: User, **overrides: object) -> dict[str, object]:
    now = utc_now()
    claims: dict[str, object] = {
        "sub": str(user.id),
        "type": "access",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _alg_none(user: User) -> str:
    return jwt.encode(claims_for(user), key=None, algorithm="none")


def _tampered(user: User) -> str:
    header, _payload, signature = TOKENS.create(user.id, TokenType.ACCESS).token.split(".")
    forged = jwt.encode(claims_for(user, sub=str(uuid.uuid4())), SECRET, JWT_ALGORITHM)
    return ".".join([header, forged.split(".")[1], signature])


BAD_TOKENS: dict[str, Callable[[User], str]] = {
    "garbage": lambda _: "not-a-jwt",
    "expired": lambda u: jwt.encode(
        # Beyond the clock-skew leeway (TOKEN_LEEWAY_SECONDS, 30 s in the tests).
        claims_for(u, exp=utc_now() - timedelta(minutes=5)),
        SECRET,
        JWT_ALGORITHM,
    ),
    "tampered": _tampered,
    "wrong-secret": lambda u: jwt.encode(claims_for(u), "another-secret" * 4, JWT_ALGORITHM),
    "alg-none": _alg_none,
    "other-algorithm": lambda u: jwt.encode(claims_for(u), SECRET, "HS512"),
    "no-jti": lambda u: jwt.encode(claims_for(u, jti=None), SECRET, JWT_ALGORITHM),
    "no-type": lambda u: jwt.encode(claims_for(u, type=None), SECRET, JWT_ALGORITHM),
    "no-iat": lambda u: jwt.encode(claims_for(u, iat=None), SECRET, JWT_ALGORITHM),
    "no-exp": lambda u: jwt.encode(claims_for(u, exp=None), SECRET, JWT_ALGORITHM),
    "bad-subject": lambda u: jwt.encode(claims_for(u, sub="42"), SECRET, JWT_ALGORITHM),
    "unknown-type": lambda u: jwt.encode(claims_for(u, type="id"), SECRET, JWT_ALGORITHM),
    "refresh-as-access": lambda u: TOKENS.create(u.id, TokenType.REFRESH).token,
}


async def test_missing_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_access_tokens_are_401(
    client: AsyncClient, make_user: UserFactory, kind: str
) -> None:
    user = await make_user()
    token = BAD_TOKENS[kind](user)
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


async def test_a_valid_hand_made_token_is_accepted(
    client: AsyncClient, make_user: UserFactory
) -> None:
    """The control for the cases above: only the one defect makes them fail."""
    user = await make_user()
    token = jwt.encode(claims_for(user), SECRET, JWT_ALGORITHM)
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_access_token_as_refresh_token_is_401(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    access = TOKENS.create(user.id, TokenType.ACCESS).token
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": access})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_refresh_token_is_401(client: AsyncClient, make_user: UserFactory) -> None:
    """Correctly signed, but never issued (no row): refused."""
    user = await make_user()
    refresh = TOKENS.create(user.id, TokenType.REFRESH).token
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert response.status_code == 401


async def test_refresh_token_is_bound_to_its_user(
    client: AsyncClient, make_user: UserFactory
) -> None:
    """A genuine jti of user A under user B's subject, signed with the server's key: refused."""
    victim, intruder = await make_user(), await make_user()
    login = await client.post(
        "/api/v1/auth/login", data={"username": victim.username, "password": DEFAULT_PASSWORD}
    )
    victim_refresh = login.json()["refresh_token"]
    victim_jti = TOKENS.decode(victim_refresh, TokenType.REFRESH).jti
    forged = TOKENS.create(intruder.id, TokenType.REFRESH, jti=victim_jti).token
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": forged})
    assert response.status_code == 401
    assert "access_token" not in response.text


async def test_token_of_a_deleted_user_is_401(
    client: AsyncClient, make_user: UserFactory, session: AsyncSession
) -> None:
    user = await make_user()
    headers = auth_headers(user)
    await session.delete(user)
    await session.flush()
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_deactivation_takes_effect_at_once(
    client: AsyncClient, make_user: UserFactory, session: AsyncSession
) -> None:
    user = await make_user()
    headers = auth_headers(user)
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    user.is_active = False
    await session.flush()
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 403
    assert response.json()["error_code"] == "FORBIDDEN"


async def test_expiry_is_checked_on_every_use_of_a_verified_token(
    client: AsyncClient, make_user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified tokens are cached; the cache must not outlive a token's expiry."""
    user = await make_user()
    headers = auth_headers(user)
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    later = utc_now() + timedelta(minutes=31)
    monkeypatch.setattr(auth_module, "utc_now", lambda: later)
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "Token has expired"
