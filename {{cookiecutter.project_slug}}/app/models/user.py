from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core import field_sizes
from app.models.base import Base


class User(Base):
    __tablename__ = "users"

    # Stored lower-cased, so a plain unique index makes both case-insensitive.
    username: Mapped[str] = mapped_column(String(field_sizes.USERNAME_MAX), unique=True)
    email: Mapped[str] = mapped_column(String(field_sizes.EMAIL_MAX), unique=True)
    first_name: Mapped[str] = mapped_column(String(field_sizes.NAME_MAX))
    last_name: Mapped[str] = mapped_column(String(field_sizes.NAME_MAX))
    hashed_password: Mapped[str] = mapped_column(String(field_sizes.PASSWORD_HASH_MAX))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    # When the password last changed or the account was deactivated: access tokens issued
    # before it are refused (`app/api/v1/deps/auth.py`), on every process at once.
    credentials_changed_at: Mapped[datetime | None] = mapped_column(default=None)
