"""Users' files: the bytes go to B2, the metadata to the `files` table.

No database transaction is open while B2 is called (uploads can be slow), so a request never
holds a pooled connection or a database lock across the network.
"""

import hashlib
import uuid
from collections.abc import Sequence

from fastapi import UploadFile
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.exceptions import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from app.models.file import StoredFile
from app.repos.file import FileRepository
from app.schemas.back_blaze_bucket import B2FileVersion
from app.schemas.file import DownloadLink
from app.services.back_blaze_b2 import BackBlaze, StoredObjectNotFoundError

# The most an upload holds in memory at once while it is measured.
CHUNK_SIZE = 64 * 1024
# b2sdk refuses a path segment over 250 bytes; the name is the last segment of the B2 name.
MAX_NAME_BYTES = 250


def media_type(content_type: str | None) -> str:
    """`text/plain; charset=utf-8` -> `text/plain`; a missing type is `application/octet-stream`."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return value or "application/octet-stream"


def clean_file_name(filename: str | None) -> str:
    """The client's file name without any directory part or control characters; a name over
    MAX_NAME_BYTES in UTF-8 is refused (422), not cut.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    if len(name.encode()) > MAX_NAME_BYTES:
        msg = f"The file name is longer than {MAX_NAME_BYTES} bytes in UTF-8"
        raise InvalidInputError(msg)
    return name if name not in {"", ".", ".."} else "file"


class FileService:
    def __init__(self, session: AsyncSession, storage: BackBlaze, settings: Settings) -> None:
        self._session = session
        self._repo = FileRepository(session)
        self._storage = storage
        self._max_bytes = settings.b2_upload_max_bytes
        self._allowed_types = frozenset(media_type(t) for t in settings.b2_allowed_content_types)
        self._link_valid_seconds = settings.b2_link_valid_seconds

    async def get(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> StoredFile:
        """The owner's file; another user's file is "not found" too, so ids leak nothing."""
        stored = await self._repo.get_for_owner(owner_id, file_id)
        if stored is None:
            raise NotFoundError("File not found")
        return stored

    async def list(
        self, owner_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[Sequence[StoredFile], int]:
        return await self._repo.list_for_owner(owner_id, offset=offset, limit=limit)

    async def upload(self, owner_id: uuid.UUID, upload: UploadFile) -> StoredFile:
        """Check the type (415), name (422) and size (413), store the bytes in B2, then record
        them.
        """
        content_type = media_type(upload.content_type)
        if content_type not in self._allowed_types:
            allowed = ", ".join(sorted(self._allowed_types))
            msg = f"Content type {content_type!r} is not accepted; accepted: {allowed}"
            raise UnsupportedMediaTypeError(msg)
        name = clean_file_name(upload.filename)
        size, checksum = await self._measure(upload)

        file_id = uuid.uuid4()
        # The row id in the B2 name makes every name unique and no prefix of another, which
        # keeps download authorizations (granted per name prefix) to this one file.
        stored_version = await self._storage.upload_stream(
            upload.file,
            f"{owner_id}/{file_id}/{name}",
            size=size,
            sha1=checksum,
            content_type=content_type,
            file_info={"owner_id": str(owner_id)},
        )
        stored = StoredFile(
            id=file_id,
            owner_id=owner_id,
            b2_file_id=stored_version.file_id,
            b2_file_name=stored_version.file_name,
            name=name,
            size=size,
            content_type=content_type,
            checksum=checksum,
        )
        try:
            return await self._repo.create(stored)
        except Exception:
            await self._discard(stored_version)
            raise

    async def _measure(self, upload: UploadFile) -> tuple[int, str]:
        """Size and SHA-1 of the upload, read one chunk at a time; 413 once past the limit."""
        too_large = PayloadTooLargeError(f"The file is larger than {self._max_bytes} bytes")
        if upload.size is not None and upload.size > self._max_bytes:
            raise too_large
        await upload.seek(0)
        size = 0
        digest = hashlib.sha1(usedforsecurity=False)
        while chunk := await upload.read(CHUNK_SIZE):
            size += len(chunk)
            if size > self._max_bytes:
                raise too_large
            digest.update(chunk)
        await upload.seek(0)
        return size, digest.hexdigest()

    async def _discard(self, version: B2FileVersion) -> None:
        """Best effort: remove an object whose metadata could not be saved."""
        try:
            await self._storage.delete_file(version.file_id, version.file_name)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            logger.opt(exception=True).warning(
                "Could not remove orphaned B2 object {}", version.file_name
            )

    async def delete(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> None:
        """Remove the object from B2, then its row; an object already gone counts as removed.

        If B2 fails, the row stays (the file still exists) and the error is a 502/503.
        """
        stored = await self.get(owner_id, file_id)
        await self._session.commit()  # end the read before calling B2
        try:
            await self._storage.delete_file(stored.b2_file_id, stored.b2_file_name)
        except StoredObjectNotFoundError:
            logger.warning("B2 object {} was already gone", stored.b2_file_name)
        await self._repo.delete(stored)

    async def download_link(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> DownloadLink:
        stored = await self.get(owner_id, file_id)
        await self._session.commit()  # end the read before calling B2
        link = await self._storage.get_temporary_link(stored.b2_file_name, self._link_valid_seconds)
        return DownloadLink(url=link.url, expires_in=link.expires_in)
