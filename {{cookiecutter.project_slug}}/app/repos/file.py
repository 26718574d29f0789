import uuid
from collections.abc import Sequence

from sqlalchemy import select

from app.models.file import StoredFile
from app.repos.base import BaseRepository


class FileRepository(BaseRepository[StoredFile]):
    model = StoredFile

    async def create(self, stored_file: StoredFile) -> StoredFile:
        return await self.add(stored_file)

    async def get_for_owner(self, owner_id: uuid.UUID, file_id: uuid.UUID) -> StoredFile | None:
        """The file, or None when it does not exist or belongs to someone else."""
        return await self.session.scalar(
            select(StoredFile).where(StoredFile.id == file_id, StoredFile.owner_id == owner_id)
        )

    async def list_for_owner(
        self, owner_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[Sequence[StoredFile], int]:
        query = (
            select(StoredFile)
            .where(StoredFile.owner_id == owner_id)
            .order_by(StoredFile.created_at, StoredFile.id)
        )
        return await self.page(query, offset=offset, limit=limit)
