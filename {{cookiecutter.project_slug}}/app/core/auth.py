"""Password hashing and JSON Web Tokens."""

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

import anyio
import bcrypt
import jwt

from app.core import field_sizes
from app.core.config import get_settings
from app.core.exceptions import AuthenticationError
from app.models.base import utc_now

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "type", "jti", "iat", "exp"]
VERIFIED_TOKEN_CACHE_SIZE = 4096


class TokenType(enum.StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: uuid.UUID
    token_type: TokenType
    jti: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


@cache
def _hash_limiter() -> anyio.CapacityLimiter:
    # Created on first use: a limiter belongs to the running event loop's backend.
    return anyio.CapacityLimiter(get_settings().password_hash_concurrency)


@cache
def _dummy_hash() -> bytes:
    # Checked against when the user is unknown, so that answer costs as much as a wrong password.
    return bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(get_settings().bcrypt_rounds))


def _hash_sync(password: bytes) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(get_settings().bcrypt_rounds)).decode()


def _check_sync(password: bytes, hashed: bytes | None) -> bool:
    if hashed is None or len(password) > field_sizes.PASSWORD_MAX_BYTES:
        bcrypt.checkpw(password[: field_sizes.PASSWORD_MAX_BYTES], _dummy_hash())
        return False
    return bcrypt.checkpw(password, hashed)


async def hash_password(password: str) -> str:
    """Hash in a worker thread, at most `password_hash_concurrency` at a time."""
    return await anyio.to_thread.run_sync(_hash_sync, password.encode(), limiter=_hash_limiter())


async def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password; `hashed=None` (unknown user) costs the same and returns False."""
    return await anyio.to_thread.run_sync(
        _check_sync,
        password.encode(),
        hashed.encode() if hashed is not None else None,
        limiter=_hash_limiter(),
    )


def create_token(
    subject: uuid.UUID, token_type: TokenType, *, jti: uuid.UUID | None = None
) -> IssuedToken:
    settings = get_settings()
    lifetime = (
        timedelta(minutes=settings.access_token_expire_minutes)
        if token_type is TokenType.ACCESS
        else timedelta(days=settings.refresh_token_expire_days)
    )
    issued_at = utc_now()
    claims = TokenClaims(
        subject=subject,
        token_type=token_type,
        jti=jti or uuid.uuid4(),
        expires_at=issued_at + lifetime,
    )
    payload = {
        "sub": str(claims.subject),
        "type": claims.token_type.value,
        "jti": str(claims.jti),
        "iat": issued_at,
        "exp": claims.expires_at,
    }
    token = jwt.encode(payload, settings.secret_key.get_secret_value(), JWT_ALGORITHM)
    return IssuedToken(token=token, claims=claims)


@lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)
def _verified_claims(token: str) -> TokenClaims:
    """Signature, algorithm and claims of a token, checked once per distinct token.

    Clients send the same access token with every request, and checking it costs more than
    the rest of a cheap request; expiry changes with time, so `decode_token` checks it on
    every use. Invalid tokens raise, and are not cached.
    """
    payload = jwt.decode(
        token,
        get_settings().secret_key.get_secret_value(),
        algorithms=[JWT_ALGORITHM],
        options={"require": REQUIRED_CLAIMS, "verify_exp": False},
    )
    return TokenClaims(
        subject=uuid.UUID(str(payload["sub"])),
        token_type=TokenType(payload["type"]),
        jti=uuid.UUID(str(payload["jti"])),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC),
    )


def decode_token(token: str, expected_type: TokenType) -> TokenClaims:
    """Verify signature, algorithm, expiry, required claims and token type, or raise 401."""
    try:
        claims = _verified_claims(token)
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise AuthenticationError("Invalid token") from exc
    if claims.expires_at <= utc_now():
        raise AuthenticationError("Token has expired")
    if claims.token_type is not expected_type:
        raise AuthenticationError(f"Expected a {expected_type.value} token")
    return claims
