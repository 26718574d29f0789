import uuid
from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status

from app.api.v1.deps.auth import CurrentUser
from app.api.v1.deps.pagination import PageDep
from app.api.v1.deps.storage import FileReaderDep, FileServiceDep
from app.core.responses import error_responses
from app.schemas.base import Page
from app.schemas.file import DownloadLink, FileRead

router = APIRouter(prefix="/files", tags=["files"])

AUTH_ERRORS = (401, 403)
STORAGE_ERRORS = (502, 503)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, *AUTH_ERRORS, 413, 415, 422, *STORAGE_ERRORS),
)
async def upload_file(
    file: Annotated[UploadFile, File(description="The file to store")],
    user: CurrentUser,
    files: FileServiceDep,
) -> FileRead:
    """Store a file; its content type must be one of the accepted ones and its size bounded."""
    return FileRead.model_validate(await files.upload(user.id, file))


@router.get("", responses=error_responses(*AUTH_ERRORS, 422))
async def list_files(user: CurrentUser, files: FileReaderDep, page: PageDep) -> Page[FileRead]:
    items, total = await files.list(user.id, offset=page.offset, limit=page.limit)
    return Page(
        items=[FileRead.model_validate(item) for item in items],
        total=total,
        offset=page.offset,
        limit=page.limit,
    )


@router.get("/{file_id}", responses=error_responses(*AUTH_ERRORS, 404, 422))
async def read_file(file_id: uuid.UUID, user: CurrentUser, files: FileReaderDep) -> FileRead:
    return FileRead.model_validate(await files.get(user.id, file_id))


@router.get(
    "/{file_id}/download", responses=error_responses(*AUTH_ERRORS, 404, 422, *STORAGE_ERRORS)
)
async def download_file(
    file_id: uuid.UUID, user: CurrentUser, files: FileReaderDep
) -> DownloadLink:
    """A temporary link that downloads the file without credentials until it expires."""
    return await files.download_link(user.id, file_id)


@router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*AUTH_ERRORS, 404, 422, *STORAGE_ERRORS),
)
async def delete_file(file_id: uuid.UUID, user: CurrentUser, files: FileServiceDep) -> None:
    """Delete the file from storage, then its record."""
    await files.delete(user.id, file_id)
