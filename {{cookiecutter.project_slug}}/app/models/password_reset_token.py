import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

SHA256_HEX_LENGTH = 64


class PasswordResetToken(Base):
    """One password-reset link sent (or being sent) to a user; only its hash is kept.

    `request_id` names the request that asked for it, so a job that runs again finds its own
    row. A token is good once, until `expires_at`, and only while no later request of the same
    user exists: asking again invalidates the links sent before.
    """

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
