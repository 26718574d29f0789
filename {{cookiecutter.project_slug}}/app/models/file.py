"""Metadata of a user's file stored in Backblaze B2 (the bytes live in B2, not here)."""

import uuid

from sqlalchemy import BigInteger, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

FILE_NAME_MAX = 255
CONTENT_TYPE_MAX = 255
# B2 file ids are ~80 characters today; B2 file names are at most 1024 bytes.
B2_FILE_ID_MAX = 200
B2_FILE_NAME_MAX = 1024
SHA1_HEX_LENGTH = 40


class StoredFile(Base):
    """One uploaded file, owned by one user.

    `owner_id` is `ON DELETE RESTRICT`: a user who still owns files cannot be deleted (the
    database refuses, the API answers 409), so deleting a user never orphans B2 objects or
    drops their metadata silently. Delete the user's files first.
    """

    __tablename__ = "files"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    b2_file_id: Mapped[str] = mapped_column(String(B2_FILE_ID_MAX), unique=True)
    b2_file_name: Mapped[str] = mapped_column(String(B2_FILE_NAME_MAX))
    name: Mapped[str] = mapped_column(String(FILE_NAME_MAX))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(CONTENT_TYPE_MAX))
    checksum: Mapped[str] = mapped_column(String(SHA1_HEX_LENGTH))
