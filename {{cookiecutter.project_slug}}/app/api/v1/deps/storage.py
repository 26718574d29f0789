"""The B2 storage service: one per process, built from settings on first use.

Building it does no I/O; it authorizes with B2 on its first call. Tests replace it with
`app.dependency_overrides[get_storage] = lambda: simulator_backed_service`.
"""

from functools import lru_cache
from typing import Annotated

from fastapi import Depends

from app.api.v1.deps.db import SessionDep
from app.core.config import get_settings
from app.services.back_blaze_b2 import BackBlaze
from app.services.files import FileService


@lru_cache
def get_storage() -> BackBlaze:
    settings = get_settings()
    storage = BackBlaze(
        settings.b2_application_key_id, settings.b2_application_key, realm=settings.b2_realm
    )
    return storage.select_bucket(settings.b2_bucket_name)


StorageDep = Annotated[BackBlaze, Depends(get_storage)]


def get_file_service(session: SessionDep, storage: StorageDep) -> FileService:
    return FileService(session, storage, get_settings())


FileServiceDep = Annotated[FileService, Depends(get_file_service)]
