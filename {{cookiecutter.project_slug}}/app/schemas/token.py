from typing import Literal

from pydantic import Field

from app.schemas.base import Schema


class TokenPair(Schema):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")


class RefreshRequest(Schema):
    refresh_token: str = Field(
        max_length=4096,
        description="The refresh token from the login or the last refresh",
        examples=["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOi..."],
    )
