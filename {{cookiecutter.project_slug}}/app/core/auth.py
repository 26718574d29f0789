"""Password hashing and JSON Web Tokens, configured from the app's settings."""

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Self

import anyio
import bcrypt
import jwt

from app.core import field_sizes
from app.core.clock import utc_now
from app.core.config import Settings
from app.core.exceptions import AuthenticationError

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
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class PasswordHasher:
    """bcrypt in worker threads, at most `concurrency` hashes at a time.

    Hashing is CPU-bound: more parallel hashes than spare cores only starve the event loop.
    Create it inside the running event loop (the app's lifespan, a command's `asyncio.run`).
    """

    def __init__(self, *, rounds: int, concurrency: int) -> None:
        self.rounds = rounds
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._dummy: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(rounds=settings.bcrypt_rounds, concurrency=settings.password_hash_concurrency)

    def _hash_sync(self, password: bytes) -> str:
        return bcrypt.hashpw(password, bcrypt.gensalt(self.rounds)).decode()

    def dummy_hash(self) -> bytes:
        """A hash of no one's password, made once (in a worker thread, on first need)."""
        if self._dummy is None:
            self._dummy = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(self.rounds))
        return self._dummy

    def _check_sync(self, password: bytes, hashed: bytes | None) -> bool:
        if hashed is None or len(password) > field_sizes.PASSWORD_MAX_BYTES:
            # Unknown user or over-long password: check against a dummy hash anyway, so that
            # the answer costs as much as a wrong password and reveals nothing.
            bcrypt.checkpw(password[: field_sizes.PASSWORD_MAX_BYTES], self.dummy_hash())
            return False
        return bcrypt.checkpw(password, hashed)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(
            self._hash_sync, password.encode(), limiter=self._limiter
        )

    async def verify(
        self,
        password: str,
        hashed: str | None,
        *,
        before_check: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Check a password; `hashed=None` (unknown user) costs the same and returns False.

        `before_check` runs once this call's turn to hash has come, right before the hash: a
        rate limit checked there stops attempts that queued up before the limit was reached.
        """
        async with self._limiter:
            if before_check is not None:
                await before_check()
            return await anyio.to_thread.run_sync(
                self._check_sync,
                password.encode(),
                hashed.encode() if hashed is not None else None,
            )


class TokenCodec:
    """Signs and verifies the access and refresh tokens (HS256, every claim required)."""

    def __init__(
        self,
        secret: str,
        *,
        access_lifetime: timedelta,
        refresh_lifetime: timedelta,
        leeway: timedelta = timedelta(0),
    ) -> None:
        self._secret = secret
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.leeway = leeway
        # Clients send the same access token with every request, and checking its signature
        # costs more than the rest of a cheap request: each distinct token is verified once.
        self._verified_claims = lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)(self._verify)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            settings.secret_key.get_secret_value(),
            access_lifetime=timedelta(minutes=settings.access_token_expire_minutes),
            refresh_lifetime=timedelta(days=settings.refresh_token_expire_days),
            leeway=timedelta(seconds=settings.token_leeway_seconds),
        )

    def create(
        self, subject: uuid.UUID, token_type: TokenType, *, jti: uuid.UUID | None = None
    ) -> IssuedToken:
        lifetime = self.access_lifetime if token_type is TokenType.ACCESS else self.refresh_lifetime
        issued_at = utc_now()
        claims = TokenClaims(
            subject=subject,
            token_type=token_type,
            jti=jti or uuid.uuid4(),
            issued_at=issued_at,
            expires_at=issued_at + lifetime,
        )
        payload = {
            "sub": str(claims.subject),
            "type": claims.token_type.value,
            "jti": str(claims.jti),
            # To the microsecond (a JWT NumericDate may have a fraction): a token issued just
            # after the credentials changed must not look issued before.
            "iat": issued_at.timestamp(),
            "exp": claims.expires_at,
        }
        return IssuedToken(token=jwt.encode(payload, self._secret, JWT_ALGORITHM), claims=claims)

    def _verify(self, token: str) -> TokenClaims:
        """Signature, algorithm and claims; expiry changes with time, so `decode` checks it on
        every use. Invalid tokens raise, and are not cached.
        """
        payload = jwt.decode(
            token,
            self._secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": REQUIRED_CLAIMS, "verify_exp": False},
            leeway=self.leeway,
        )
        return TokenClaims(
            subject=uuid.UUID(str(payload["sub"])),
            token_type=TokenType(payload["type"]),
            jti=uuid.UUID(str(payload["jti"])),
            issued_at=datetime.fromtimestamp(float(payload["iat"]), tz=UTC),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC),
        )

    def decode(self, token: str, expected_type: TokenType) -> TokenClaims:
        """Verify signature, algorithm, expiry, required claims and token type, or raise 401."""
        try:
            claims = self._verified_claims(token)
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise AuthenticationError("Invalid token") from exc
        if claims.expires_at + self.leeway <= utc_now():
            raise AuthenticationError("Token has expired")
        if claims.token_type is not expected_type:
            raise AuthenticationError(f"Expected a {expected_type.value} token")
        return claims
