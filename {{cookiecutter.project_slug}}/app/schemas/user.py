import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from app.core import field_sizes
from app.schemas.base import Schema


def _password_fits_bcrypt(password: SecretStr) -> SecretStr:
    # bcrypt reads at most 72 bytes; refuse longer ones instead of silently truncating them.
    if len(password.get_secret_value().encode()) > field_sizes.PASSWORD_MAX_BYTES:
        msg = f"must be at most {field_sizes.PASSWORD_MAX_BYTES} bytes in UTF-8"
        raise ValueError(msg)
    return password


# SecretStr: a repr or a log line of the model shows `**********`, never the password.
Password = Annotated[
    SecretStr,
    Field(
        min_length=field_sizes.PASSWORD_MIN_CHARS,
        max_length=field_sizes.PASSWORD_MAX_BYTES,
        description=(
            f"{field_sizes.PASSWORD_MIN_CHARS} characters or more, and at most "
            f"{field_sizes.PASSWORD_MAX_BYTES} bytes in UTF-8 (bcrypt's limit: a character "
            "outside ASCII takes 2 to 4 bytes)"
        ),
    ),
    AfterValidator(_password_fits_bcrypt),
]
# Scripts that are written together: Japanese mixes kana and kanji, Korean hangul and hanja.
_SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "BOPOMOFO": "CJK"}


def nfkc(value: object) -> object:
    """Compatibility forms folded (full-width a, U+FF41, is a), so look-alikes meet as equals."""
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


def _script(char: str) -> str:
    script = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_FAMILIES.get(script, script)


def _local_part_in_one_script(email: str) -> str:
    # A Cyrillic a (U+0430) among Latin letters looks Latin: such an address impersonates another.
    scripts = {_script(char) for char in email.rpartition("@")[0] if char.isalpha()}
    if len(scripts) > 1:
        msg = "the part before @ mixes alphabets (" + ", ".join(sorted(scripts)).lower() + ")"
        raise ValueError(msg)
    return email


Username = Annotated[
    str,
    BeforeValidator(nfkc),
    Field(description="Letters, digits, `_`, `.` and `-`; stored lower-cased"),
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=field_sizes.USERNAME_MIN,
        max_length=field_sizes.USERNAME_MAX,
        pattern=field_sizes.USERNAME_PATTERN,
    ),
]
Email = Annotated[
    EmailStr,
    BeforeValidator(nfkc),
    Field(
        max_length=field_sizes.EMAIL_MAX,
        description="Stored NFKC-normalised and lower-cased; the part before @ in one alphabet",
    ),
    AfterValidator(str.lower),
    AfterValidator(_local_part_in_one_script),
]
PersonName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=field_sizes.NAME_MAX,
        pattern=field_sizes.NO_NUL_PATTERN,
    ),
]


class UserCreate(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "ada",
                    "email": "ada@example.com",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "password": "correct horse battery staple",
                }
            ]
        }
    )

    username: Username
    email: Email
    first_name: PersonName
    last_name: PersonName
    password: Password


class UserUpdate(Schema):
    """Partial update: omitted fields stay as they are; null is refused."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"first_name": "Augusta Ada"}]})

    username: Username | None = None
    email: Email | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(str(key) for key, value in data.items() if value is None)
            if nulls:
                msg = f"fields may be omitted but not null: {', '.join(nulls)}"
                raise ValueError(msg)
        return data


class UserAdminUpdate(UserUpdate):
    model_config = ConfigDict(json_schema_extra={"examples": [{"is_active": False}]})

    is_active: bool | None = None
    is_superuser: bool | None = None


class PasswordChange(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_password": "correct horse battery staple",
                    "new_password": "another long passphrase",
                }
            ]
        }
    )

    current_password: SecretStr = Field(max_length=1024)
    new_password: Password


class UserRead(Schema):
    id: uuid.UUID
    username: str
    email: str
    first_name: str
    last_name: str
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime
