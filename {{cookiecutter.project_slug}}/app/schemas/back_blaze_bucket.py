"""Typed results of the Backblaze B2 service (`app.services.back_blaze_b2`)."""

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BucketType(enum.StrEnum):
    PRIVATE = "allPrivate"
    PUBLIC = "allPublic"


class B2Schema(BaseModel):
    model_config = ConfigDict(frozen=True)


class B2Bucket(B2Schema):
    id: str
    name: str
    type: str = Field(description="allPrivate, allPublic, or another type B2 reports")
    bucket_info: dict[str, str] = {}
    revision: int | None = None


class B2FileVersion(B2Schema):
    """One stored file version: what B2 knows about an uploaded object."""

    file_id: str
    file_name: str
    bucket_id: str | None = None
    size: int
    content_type: str | None = None
    content_sha1: str | None = Field(
        default=None, description="SHA-1 hex digest, when B2 knows it (large files: None)"
    )
    file_info: dict[str, str] = {}
    uploaded_at: datetime | None = None


class TemporaryLink(B2Schema):
    """A download URL carrying its own authorization, valid for `expires_in` seconds."""

    url: str
    expires_in: int
    expires_at: datetime
