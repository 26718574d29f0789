import uuid
from datetime import datetime

from pydantic import Field

from app.schemas.base import Schema


class FileRead(Schema):
    id: uuid.UUID
    name: str = Field(description="The file name given at upload, without any path")
    size: int = Field(description="Size in bytes")
    content_type: str
    checksum: str = Field(description="SHA-1 of the content, hex")
    created_at: datetime


class DownloadLink(Schema):
    url: str = Field(description="Downloads the file without further credentials")
    expires_in: int = Field(description="Seconds the URL stays valid")
