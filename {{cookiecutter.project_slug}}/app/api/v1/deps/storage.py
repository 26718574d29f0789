"""The B2 storage service: one per app, built in its lifespan.

Building it does no I/O; it authorizes with B2 on its first call. Tests replace it with
`app.dependency_overrides[get_storage] = lambda: simulator_backed_service`.
"""

from typing import Annotated

from fastapi import Depends, Request

from app.api.v1.deps.db import ReadSessionDep, SessionDep
from app.core.config import Settings
from app.services.back_blaze_b2 import BackBlaze
from app.services.files import FileService


async def get_storage(request: Request) -> BackBlaze:
    storage: BackBlaze = request.app.state.storage
    return storage


StorageDep = Annotated[BackBlaze, Depends(get_storage)]


async def get_file_service(
    request: Request, session: SessionDep, storage: StorageDep
) -> FileService:
    settings: Settings = request.app.state.settings
    return FileService(session, storage, settings)


FileServiceDep = Annotated[FileService, Depends(get_file_service)]


async def get_file_reader(
    request: Request, session: ReadSessionDep, storage: StorageDep
) -> FileService:
    """The file service for requests that only read: on a read session, so they do not queue
    behind writers.
    """
    settings: Settings = request.app.state.settings
    return FileService(session, storage, settings)


FileReaderDep = Annotated[FileService, Depends(get_file_reader)]
