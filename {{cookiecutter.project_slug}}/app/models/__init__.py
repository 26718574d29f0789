"""Every model, imported here so that Alembic's autogenerate sees the whole schema."""

from app.models.base import Base
{%- if cookiecutter.use_b2_storage %}
from app.models.file import StoredFile
{%- endif %}
from app.models.password_reset_token import PasswordResetToken
from app.models.refresh_token import RefreshToken
from app.models.user import User

__all__ = [
    "Base",
    "PasswordResetToken",
    "RefreshToken",
    {%- if cookiecutter.use_b2_storage %}
    "StoredFile",
    {%- endif %}
    "User",
]
