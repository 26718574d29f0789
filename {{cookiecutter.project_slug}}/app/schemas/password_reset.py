from pydantic import ConfigDict, Field

from app.schemas.base import Schema
from app.schemas.user import Email, Password

RESET_TOKEN_MAX = 128
ACCEPTED_DETAIL = (
    "If an account uses this address, an e-mail with a link to reset its password is on its way"
)


class PasswordResetRequest(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})

    email: Email


class PasswordResetAccepted(Schema):
    """The same answer whether an account uses the address or not."""

    detail: str = Field(default=ACCEPTED_DETAIL, examples=[ACCEPTED_DETAIL])


class PasswordResetConfirm(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "kJ3n1d0v7QmZq2cX9b8YtL4wPe6sRa5uHf0gNiMoK1E",
                    "new_password": "another long passphrase",
                }
            ]
        }
    )

    token: str = Field(
        min_length=1,
        max_length=RESET_TOKEN_MAX,
        description="The `token` parameter of the link in the password-reset e-mail",
    )
    new_password: Password
