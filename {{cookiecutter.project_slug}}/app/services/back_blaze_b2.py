"""Backblaze B2 storage: buckets, files, URLs and metadata, through b2sdk's public `v2` API.

b2sdk is a blocking library, so every public method here is a coroutine that runs its b2sdk
calls in a worker thread (`anyio.to_thread.run_sync`) and never on the event loop.

Nothing talks to B2 at import or construction time: the account is authorized on the first
call. The key stays in b2sdk's in-memory account info, so when B2 answers that the token has
expired, b2sdk authorizes again by itself and retries the call once.

Every failure leaves as one of the exceptions below; they subclass the application's own
exceptions, so the API answers with the usual error body and a 404/409/502/503 status, never a
500 carrying B2 internals.
"""

import io
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from os import PathLike
from typing import IO, Any, Protocol, Self, TypeVar, cast, runtime_checkable

import anyio.to_thread
from b2sdk.v2 import (  # type: ignore[import-untyped]
    B2Api,
    B2HttpApiConfig,
    InMemoryAccountInfo,
    UploadSourceStream,
)
from b2sdk.v2 import exception as b2_exc
from loguru import logger
from pydantic import SecretStr

from app.core.exceptions import (
    AppError,
    BadGatewayError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)
from app.schemas.back_blaze_bucket import B2Bucket, B2FileVersion, BucketType, TemporaryLink

T = TypeVar("T")

# B2 caps download authorizations at one week.
MAX_LINK_VALID_SECONDS = 604_800


class StorageError(BadGatewayError):
    error_code = "STORAGE_ERROR"
    detail = "The file storage failed to complete the operation"


class StorageUnavailableError(ServiceUnavailableError):
    error_code = "STORAGE_UNAVAILABLE"
    detail = "The file storage is temporarily unavailable"


class StorageAuthorizationError(ServiceUnavailableError):
    error_code = "STORAGE_UNAUTHORIZED"
    detail = "The file storage refused this service's credentials"


class BucketNotFoundError(ServiceUnavailableError):
    error_code = "BUCKET_NOT_FOUND"
    detail = "The storage bucket does not exist"


class NoBucketSelectedError(ServiceUnavailableError):
    error_code = "NO_BUCKET_SELECTED"
    detail = "No storage bucket is selected"


class BucketAlreadyExistsError(ConflictError):
    error_code = "BUCKET_ALREADY_EXISTS"
    detail = "A bucket with this name already exists"


class StoredObjectNotFoundError(NotFoundError):
    error_code = "STORAGE_FILE_NOT_FOUND"
    detail = "The file does not exist in storage"


# Failures that say "try again later" rather than "this request is wrong".
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    b2_exc.B2ConnectionError,
    b2_exc.B2RequestTimeout,
    b2_exc.ConnectionReset,
    b2_exc.MaxRetriesExceeded,
    b2_exc.RequestTimeout,
    b2_exc.ServiceError,
    b2_exc.TooManyRequests,
    b2_exc.UnknownHost,
)


def _to_storage_error(exc: Exception) -> AppError:
    """Map a b2sdk (or any other) failure to one of the application's storage errors."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, b2_exc.NonExistentBucket | b2_exc.BucketIdNotFound):
        return BucketNotFoundError()
    if isinstance(exc, b2_exc.FileNotPresent):
        return StoredObjectNotFoundError()
    if isinstance(exc, b2_exc.DuplicateBucketName):
        return BucketAlreadyExistsError()
    if isinstance(exc, b2_exc.Unauthorized | b2_exc.MissingAccountData | b2_exc.RestrictedBucket):
        return StorageAuthorizationError()
    if isinstance(exc, _TRANSIENT_ERRORS):
        return StorageUnavailableError()
    return StorageError()


def _timestamp(millis: object) -> datetime | None:
    if not isinstance(millis, int):
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _sha1(value: object) -> str | None:
    # B2 reports "none" for large files, and "unverified:<sha1>" for some uploads.
    if not isinstance(value, str) or value == "none":
        return None
    return value.removeprefix("unverified:")


def _bucket_schema(bucket: Any) -> B2Bucket:
    return B2Bucket(
        id=str(bucket.id_),
        name=str(bucket.name),
        type=str(bucket.type_),
        bucket_info=dict(cast("Mapping[str, str]", bucket.bucket_info or {})),
        revision=cast("int | None", bucket.revision),
    )


def _file_schema(version: Any) -> B2FileVersion:
    file_info = dict(cast("Mapping[str, str]", version.file_info or {}))
    return B2FileVersion(
        file_id=str(version.id_),
        file_name=str(version.file_name),
        bucket_id=cast("str | None", getattr(version, "bucket_id", None)),
        size=int(version.size),
        content_type=cast("str | None", version.content_type),
        # Large files (uploaded in parts) carry their whole-file SHA-1 in their info, if at all.
        content_sha1=_sha1(version.content_sha1) or _sha1(file_info.get("large_file_sha1")),
        file_info=file_info,
        uploaded_at=_timestamp(version.upload_timestamp),
    )


@runtime_checkable
class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _StreamWindow(io.RawIOBase):
    """A read-only view of a caller's seekable binary stream, from its current position.

    b2sdk closes the streams it is handed and may open a source more than once (a retried
    upload, parts of a large file read in parallel); each view keeps its own position, reads
    under a shared lock, and closing it leaves the caller's stream open.
    """

    def __init__(self, raw: IO[bytes], start: int, length: int, lock: threading.Lock) -> None:
        super().__init__()
        self._raw = raw
        self._start = start
        self._length = length
        self._lock = lock
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._length - self._pos)
        if wanted <= 0:
            return 0
        with self._lock:
            self._raw.seek(self._start + self._pos)
            data = self._raw.read(wanted)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _ChunkReader(io.RawIOBase):
    """A file-like reader over an iterable of byte chunks (read once, front to back)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = bytes(chunk)
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class BackBlaze:
    """Async facade over one B2 account, with an optional selected bucket.

    ``BackBlaze(key_id, key).select_bucket("my-bucket")`` does no I/O; the first awaited call
    authorizes the account and resolves the bucket. Safe to share across requests as long as
    nobody calls ``select_bucket`` on the shared instance.
    """

    def __init__(
        self,
        application_key_id: str,
        application_key: SecretStr | str,
        *,
        realm: str = "production",
        api_config: B2HttpApiConfig | None = None,
    ) -> None:
        if isinstance(application_key, str):
            application_key = SecretStr(application_key)
        self._key_id = application_key_id
        self._key = application_key
        self._realm = realm
        config = api_config if api_config is not None else B2HttpApiConfig()
        self._api: B2Api = B2Api(InMemoryAccountInfo(), api_config=config)
        self._auth_lock = threading.Lock()
        self._authorized = False
        self._bucket_name: str | None = None
        self._bucket: Any = None

    def __repr__(self) -> str:
        return f"BackBlaze(key_id={self._key_id!r}, bucket={self._bucket_name!r})"

    # --- plumbing -----------------------------------------------------------------------

    @property
    def bucket_name(self) -> str | None:
        return self._bucket_name

    def select_bucket(self, bucket_name: str) -> Self:
        """Select the bucket the file operations use; checked on first use, not here."""
        if bucket_name != self._bucket_name:
            self._bucket_name = bucket_name
            self._bucket = None
        return self

    def _authorize(self) -> None:
        with self._auth_lock:
            if self._authorized:
                return
            self._api.authorize_account(self._realm, self._key_id, self._key.get_secret_value())
            self._authorized = True

    def _selected_bucket(self) -> Any:
        bucket_name = self._bucket_name
        if bucket_name is None:
            raise NoBucketSelectedError()
        bucket = self._bucket
        if bucket is None or bucket.name != bucket_name:
            bucket = self._api.get_bucket_by_name(bucket_name)
            self._bucket = bucket
        return bucket

    def _bucket_by_name(self, bucket_name: str | None) -> Any:
        if bucket_name is None:
            return self._selected_bucket()
        return self._api.get_bucket_by_name(bucket_name)

    def _guarded(self, operation: str, func: Callable[[], T]) -> T:
        """Run one operation in the worker thread: authorize if needed, translate failures."""
        try:
            self._authorize()
            return func()
        except Exception as exc:
            error = _to_storage_error(exc)
            if error is not exc:
                logger.opt(exception=exc).warning(
                    "B2 {} failed: {}", operation, type(error).__name__
                )
                raise error from exc
            raise

    async def _run(
        self, operation: str, func: Callable[[], T], *, abandon_on_cancel: bool = False
    ) -> T:
        return await anyio.to_thread.run_sync(
            partial(self._guarded, operation, func), abandon_on_cancel=abandon_on_cancel
        )

    async def check(self) -> None:
        """The readiness probe: one B2 call that needs valid credentials and the bucket.

        A caller's timeout returns at once; the worker thread finishes in the background.
        """

        def run() -> None:
            bucket_name = self._bucket_name
            if bucket_name is None:
                raise NoBucketSelectedError()
            if not self._api.list_buckets(bucket_name=bucket_name):
                raise BucketNotFoundError()

        await self._run("check", run, abandon_on_cancel=True)

    # --- buckets ------------------------------------------------------------------------

    async def list_buckets(self) -> list[B2Bucket]:
        def run() -> list[B2Bucket]:
            return [_bucket_schema(b) for b in self._api.list_buckets()]

        return await self._run("list_buckets", run)

    async def get_bucket(self, bucket_name: str | None = None) -> B2Bucket:
        """Details of the named bucket, or of the selected one."""

        def run() -> B2Bucket:
            return _bucket_schema(self._bucket_by_name(bucket_name).get_fresh_state())

        return await self._run("get_bucket", run)

    async def create_bucket(
        self,
        bucket_name: str,
        bucket_type: BucketType | str = BucketType.PRIVATE,
        *,
        bucket_info: Mapping[str, str] | None = None,
    ) -> B2Bucket:
        def run() -> B2Bucket:
            bucket = self._api.create_bucket(
                bucket_name, str(bucket_type), bucket_info=dict(bucket_info or {})
            )
            return _bucket_schema(bucket)

        return await self._run("create_bucket", run)

    async def update_bucket(
        self,
        bucket_name: str | None = None,
        *,
        bucket_type: BucketType | str | None = None,
        bucket_info: Mapping[str, str] | None = None,
    ) -> B2Bucket:
        """Change the type and/or info of the named bucket, or of the selected one."""

        def run() -> B2Bucket:
            bucket = self._bucket_by_name(bucket_name).update(
                bucket_type=None if bucket_type is None else str(bucket_type),
                bucket_info=None if bucket_info is None else dict(bucket_info),
            )
            return _bucket_schema(bucket)

        return await self._run("update_bucket", run)

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an (empty) bucket; B2 refuses to delete a bucket that still holds files."""

        def run() -> None:
            self._api.delete_bucket(self._api.get_bucket_by_name(bucket_name))
            if bucket_name == self._bucket_name:
                self._bucket = None

        await self._run("delete_bucket", run)

    # --- files --------------------------------------------------------------------------

    async def upload_file(
        self,
        local_file_path: str | PathLike[str],
        b2_file_name: str,
        *,
        content_type: str | None = None,
        file_info: Mapping[str, str] | None = None,
    ) -> B2FileVersion:
        """Upload a local file. The local file is left alone, whether the upload works or not."""

        def run() -> B2FileVersion:
            version = self._selected_bucket().upload_local_file(
                local_file=str(local_file_path),
                file_name=b2_file_name,
                content_type=content_type,
                file_info=dict(file_info or {}),
            )
            return _file_schema(version)

        return await self._run("upload_file", run)

    async def upload_bytes(
        self,
        data: bytes,
        b2_file_name: str,
        *,
        content_type: str | None = None,
        file_info: Mapping[str, str] | None = None,
    ) -> B2FileVersion:
        def run() -> B2FileVersion:
            version = self._selected_bucket().upload_bytes(
                data, b2_file_name, content_type=content_type, file_info=dict(file_info or {})
            )
            return _file_schema(version)

        return await self._run("upload_bytes", run)

    async def upload_stream(
        self,
        source: IO[bytes] | Iterable[bytes],
        b2_file_name: str,
        *,
        size: int | None = None,
        sha1: str | None = None,
        content_type: str | None = None,
        file_info: Mapping[str, str] | None = None,
    ) -> B2FileVersion:
        """Upload from a binary stream or an iterable of byte chunks.

        A seekable stream with a known ``size`` (bytes from its current position) is sent in
        chunks straight from the stream, which stays open and untouched. Without a size, or
        from a chunk iterable, b2sdk's unbound-stream upload buffers up to one part (B2's
        recommended part size) before sending.
        """
        file_info = dict(file_info or {})

        def run() -> B2FileVersion:
            bucket = self._selected_bucket()
            if isinstance(source, _Readable):
                stream = source
                if size is not None and stream.seekable():
                    start, lock = stream.tell(), threading.Lock()
                    upload_source = UploadSourceStream(
                        lambda: _StreamWindow(stream, start, size, lock),
                        stream_length=size,
                        stream_sha1=sha1,
                    )
                    return _file_schema(
                        bucket.upload(
                            upload_source,
                            b2_file_name,
                            content_type=content_type,
                            file_info=file_info,
                        )
                    )
                reader: IO[bytes] | _ChunkReader = stream
            else:
                reader = _ChunkReader(source)
            version = bucket.upload_unbound_stream(
                reader, b2_file_name, content_type=content_type, file_info=file_info
            )
            return _file_schema(version)

        return await self._run("upload_stream", run)

    async def download_file(self, file_id: str, local_file_path: str | PathLike[str]) -> None:
        """Download a file by id into a local path (overwritten)."""

        def run() -> None:
            self._api.download_file_by_id(file_id).save_to(str(local_file_path))

        await self._run("download_file", run)

    async def download_to_stream(self, file_id: str, stream: IO[bytes]) -> None:
        """Download a file by id into a writable binary stream."""

        def run() -> None:
            self._api.download_file_by_id(file_id).save(stream)

        await self._run("download_to_stream", run)

    async def download_bytes(self, file_id: str) -> bytes:
        """Download a (small) file by id into memory."""
        buffer = io.BytesIO()
        await self.download_to_stream(file_id, buffer)
        return buffer.getvalue()

    async def delete_file(self, file_id: str, file_name: str | None = None) -> None:
        """Delete one file version; without its name, the name is looked up first."""

        def run() -> None:
            name = file_name
            if name is None:
                name = str(self._api.get_file_info(file_id).file_name)
            self._api.delete_file_version(file_id, name)

        await self._run("delete_file", run)

    async def get_file_details(self, file_id: str) -> B2FileVersion:
        def run() -> B2FileVersion:
            return _file_schema(self._api.get_file_info(file_id))

        return await self._run("get_file_details", run)

    async def list_files(self, prefix: str = "") -> list[B2FileVersion]:
        """Latest versions of the files in the selected bucket under a name prefix."""

        def run() -> list[B2FileVersion]:
            entries = self._selected_bucket().ls(prefix, recursive=True)
            return [_file_schema(version) for version, _folder in entries]

        return await self._run("list_files", run)

    # --- URLs ---------------------------------------------------------------------------

    async def get_public_url(self, file_name: str) -> str:
        """The file's URL by name; downloadable without credentials only in a public bucket."""

        def run() -> str:
            return str(self._selected_bucket().get_download_url(file_name))

        return await self._run("get_public_url", run)

    async def get_private_url(self, file_id: str) -> str:
        """The file's URL by id; needs an ``Authorization`` header with a B2 token."""

        def run() -> str:
            return str(self._api.get_download_url_for_fileid(file_id))

        return await self._run("get_private_url", run)

    async def get_temporary_link(self, file_name: str, valid_seconds: int) -> TemporaryLink:
        """A URL that downloads this file without credentials for ``valid_seconds``.

        The authorization covers every name starting with ``file_name``: give files names
        that are not prefixes of other names (e.g. a unique id as a path segment).
        """
        if not 1 <= valid_seconds <= MAX_LINK_VALID_SECONDS:
            msg = f"valid_seconds must be between 1 and {MAX_LINK_VALID_SECONDS}"
            raise ValueError(msg)

        def run() -> TemporaryLink:
            issued_at = datetime.now(UTC)
            bucket = self._selected_bucket()
            token = str(bucket.get_download_authorization(file_name, valid_seconds))
            url = str(bucket.get_download_url(file_name))
            query = urllib.parse.urlencode({"Authorization": token})
            return TemporaryLink(
                url=f"{url}?{query}",
                expires_in=valid_seconds,
                expires_at=issued_at + timedelta(seconds=valid_seconds),
            )

        return await self._run("get_temporary_link", run)
