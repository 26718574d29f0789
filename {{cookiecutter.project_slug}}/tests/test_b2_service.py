"""The B2 service against b2sdk's own in-memory B2 (`RawSimulator`), not hand-written mocks."""

import hashlib
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from b2sdk.v2 import RawSimulator
from b2sdk.v2 import exception as b2_exc

from app.schemas.back_blaze_bucket import BucketType
from app.services.back_blaze_b2 import (
    BackBlaze,
    BucketAlreadyExistsError,
    BucketNotFoundError,
    NoBucketSelectedError,
    StorageAuthorizationError,
    StorageError,
    StorageUnavailableError,
)
from tests.helpers import make_storage

BUCKET = "test-bucket"


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


class ThreadRecordingSimulator(RawSimulator):  # type: ignore[misc]
    """Remembers which threads called into "B2"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calling_threads: set[int] = set()

    def authorize_account(self, *args: Any, **kwargs: Any) -> Any:
        self.calling_threads.add(threading.get_ident())
        return super().authorize_account(*args, **kwargs)

    def list_buckets(self, *args: Any, **kwargs: Any) -> Any:
        self.calling_threads.add(threading.get_ident())
        return super().list_buckets(*args, **kwargs)


@pytest.fixture
def simulator() -> RawSimulator:
    return ThreadRecordingSimulator()


@pytest.fixture
def account(simulator: RawSimulator) -> tuple[str, str]:
    key_id, key = simulator.create_account()
    return key_id, key


@pytest.fixture
def service(simulator: RawSimulator, account: tuple[str, str]) -> BackBlaze:
    return make_storage(simulator, *account)


@pytest.fixture
async def storage(service: BackBlaze) -> BackBlaze:
    await service.create_bucket(BUCKET)
    return service.select_bucket(BUCKET)


def expire_all_tokens(simulator: RawSimulator) -> None:
    for token in list(simulator.auth_token_to_key):
        simulator.expire_auth_token(token)


async def test_construction_and_selection_do_no_io(simulator: RawSimulator) -> None:
    service = make_storage(simulator, "key-id", "very-secret").select_bucket("any")
    assert simulator.auth_token_counter == 0
    assert service.bucket_name == "any"
    assert "very-secret" not in repr(service)


async def test_authorizes_on_first_call_in_a_worker_thread(
    simulator: ThreadRecordingSimulator, service: BackBlaze
) -> None:
    assert simulator.auth_token_counter == 0
    assert await service.list_buckets() == []
    assert simulator.auth_token_counter == 1
    await service.list_buckets()
    assert simulator.auth_token_counter == 1, "authorized once, then reused"
    assert simulator.calling_threads
    assert threading.get_ident() not in simulator.calling_threads


async def test_bucket_create_list_update_delete(service: BackBlaze) -> None:
    created = await service.create_bucket("photos", bucket_info={"purpose": "test"})
    assert created.name == "photos"
    assert created.type == BucketType.PRIVATE
    assert created.bucket_info == {"purpose": "test"}
    await service.create_bucket("public-things", BucketType.PUBLIC)

    listed = {b.name: b for b in await service.list_buckets()}
    assert set(listed) == {"photos", "public-things"}
    assert listed["public-things"].type == BucketType.PUBLIC

    updated = await service.update_bucket(
        "photos", bucket_type=BucketType.PUBLIC, bucket_info={"purpose": "updated"}
    )
    assert updated.type == BucketType.PUBLIC
    assert updated.bucket_info == {"purpose": "updated"}
    assert updated.revision is not None
    assert created.revision is not None
    assert updated.revision > created.revision

    # The selected bucket is the default target.
    selected = await service.select_bucket("photos").update_bucket(bucket_type=BucketType.PRIVATE)
    assert selected.type == BucketType.PRIVATE
    assert (await service.get_bucket()).type == BucketType.PRIVATE
    assert (await service.get_bucket("public-things")).name == "public-things"

    await service.delete_bucket("photos")
    assert [b.name for b in await service.list_buckets()] == ["public-things"]
    with pytest.raises(BucketNotFoundError):
        await service.get_bucket()


async def test_duplicate_bucket_is_a_conflict(service: BackBlaze) -> None:
    await service.create_bucket("twice")
    with pytest.raises(BucketAlreadyExistsError) as info:
        await service.create_bucket("twice")
    assert info.value.status_code == 409


async def test_deleting_a_missing_bucket(service: BackBlaze) -> None:
    with pytest.raises(BucketNotFoundError) as info:
        await service.delete_bucket("never-created")
    assert info.value.status_code == 503
    assert info.value.error_code == "BUCKET_NOT_FOUND"


async def test_file_flow_upload_list_details_download_urls_delete(
    storage: BackBlaze, tmp_path: Path
) -> None:
    local = tmp_path / "report.txt"
    local.write_bytes(b"from a local path\n")
    from_path = await storage.upload_file(
        local, "docs/report.txt", content_type="text/plain", file_info={"owner": "alice"}
    )
    assert from_path.file_name == "docs/report.txt"
    assert from_path.size == len(b"from a local path\n")
    assert from_path.content_sha1 == sha1_hex(b"from a local path\n")
    assert from_path.file_info == {"owner": "alice"}
    assert local.read_bytes() == b"from a local path\n", "the local file is left alone"

    # Larger than the simulator's part size (200 bytes): uploaded as a large file, in parts
    # read from the caller's stream in parallel.
    data = b"0123456789" * 100
    stream = io.BytesIO(b"skipped" + data)
    stream.seek(len(b"skipped"))
    from_stream = await storage.upload_stream(
        stream,
        "docs/stream.bin",
        size=len(data),
        sha1=sha1_hex(data),
        content_type="application/octet-stream",
    )
    assert from_stream.size == len(data)
    assert not stream.closed, "the caller's stream stays open"

    def chunks() -> Iterator[bytes]:
        yield b"chunk one, "
        yield b""
        yield b"chunk two"

    from_chunks = await storage.upload_stream(
        chunks(), "docs/chunks.txt", content_type="text/plain"
    )
    assert from_chunks.size == len(b"chunk one, chunk two")
    from_bytes = await storage.upload_bytes(b"raw", "other/raw.txt")
    unsized = await storage.upload_stream(io.BytesIO(b"unknown size"), "other/unsized.txt")
    assert unsized.size == len(b"unknown size")

    names = {f.file_name for f in await storage.list_files()}
    assert names == {
        "docs/report.txt",
        "docs/stream.bin",
        "docs/chunks.txt",
        "other/raw.txt",
        "other/unsized.txt",
    }
    assert {f.file_name for f in await storage.list_files("docs/")} == {
        "docs/report.txt",
        "docs/stream.bin",
        "docs/chunks.txt",
    }

    details = await storage.get_file_details(from_stream.file_id)
    assert details.file_name == "docs/stream.bin"
    assert details.size == len(data)
    assert details.content_type == "application/octet-stream"
    assert details.content_sha1 == sha1_hex(data)
    assert details.uploaded_at is not None

    assert await storage.download_bytes(from_stream.file_id) == data
    assert await storage.download_bytes(from_chunks.file_id) == b"chunk one, chunk two"
    target = tmp_path / "downloaded.txt"
    await storage.download_file(from_path.file_id, target)
    assert target.read_bytes() == b"from a local path\n"

    public_url = await storage.get_public_url("docs/report.txt")
    assert public_url.endswith(f"/file/{BUCKET}/docs/report.txt")
    private_url = await storage.get_private_url(from_path.file_id)
    assert private_url.endswith(f"b2_download_file_by_id?fileId={from_path.file_id}")
    link = await storage.get_temporary_link("docs/report.txt", 120)
    assert link.url.startswith(public_url + "?Authorization=")
    assert link.expires_in == 120
    remaining = link.expires_at - datetime.now(UTC)
    assert timedelta(seconds=110) < remaining <= timedelta(seconds=120)

    await storage.delete_file(from_path.file_id, from_path.file_name)
    await storage.delete_file(from_bytes.file_id)  # name looked up
    names = {f.file_name for f in await storage.list_files()}
    assert "docs/report.txt" not in names
    assert "other/raw.txt" not in names


async def test_temporary_link_validity_is_bounded(storage: BackBlaze) -> None:
    with pytest.raises(ValueError, match="valid_seconds"):
        await storage.get_temporary_link("x", 0)
    with pytest.raises(ValueError, match="valid_seconds"):
        await storage.get_temporary_link("x", 604_801)


async def test_wrong_key_is_an_authorization_error(
    simulator: RawSimulator, account: tuple[str, str]
) -> None:
    key_id, _key = account
    service = make_storage(simulator, key_id, "wrong-key").select_bucket(BUCKET)
    with pytest.raises(StorageAuthorizationError) as info:
        await service.list_files()
    assert info.value.status_code == 503
    assert info.value.error_code == "STORAGE_UNAUTHORIZED"
    assert "wrong-key" not in info.value.detail
    # Not remembered as authorized: a later call tries again (and fails again).
    with pytest.raises(StorageAuthorizationError):
        await service.list_buckets()


async def test_unknown_key_id_is_an_authorization_error(simulator: RawSimulator) -> None:
    with pytest.raises(StorageAuthorizationError):
        await make_storage(simulator, "unknown", "key").list_buckets()


async def test_missing_bucket(service: BackBlaze) -> None:
    service.select_bucket("does-not-exist")
    with pytest.raises(BucketNotFoundError):
        await service.upload_bytes(b"x", "x.txt")
    with pytest.raises(BucketNotFoundError):
        await service.check()


async def test_no_bucket_selected(service: BackBlaze) -> None:
    with pytest.raises(NoBucketSelectedError) as info:
        await service.upload_bytes(b"x", "x.txt")
    assert info.value.error_code == "NO_BUCKET_SELECTED"
    with pytest.raises(NoBucketSelectedError):
        await service.list_files()
    with pytest.raises(NoBucketSelectedError):
        await service.check()


async def test_check_asks_b2_every_time(
    simulator: RawSimulator, account: tuple[str, str], storage: BackBlaze
) -> None:
    await storage.check()
    await storage.delete_bucket(BUCKET)
    with pytest.raises(BucketNotFoundError):
        await storage.check()
    expire_all_tokens(simulator)
    del simulator.key_id_to_key[account[0]]
    with pytest.raises(StorageAuthorizationError):
        await storage.check()


async def test_reauthorizes_after_the_token_expires(
    simulator: RawSimulator, storage: BackBlaze
) -> None:
    await storage.upload_bytes(b"before", "before.txt")
    tokens_before = simulator.auth_token_counter

    expire_all_tokens(simulator)
    assert [f.file_name for f in await storage.list_files()] == ["before.txt"]
    assert simulator.auth_token_counter == tokens_before + 1, "authorized again, once"

    expire_all_tokens(simulator)
    assert {b.name for b in await storage.list_buckets()} == {BUCKET}
    expire_all_tokens(simulator)
    link = await storage.get_temporary_link("before.txt", 60)
    assert "Authorization=" in link.url
    assert simulator.auth_token_counter == tokens_before + 3
    expire_all_tokens(simulator)
    uploaded = await storage.upload_bytes(b"after", "after.txt")
    assert uploaded.size == len(b"after")


async def test_revoked_key_fails_cleanly_after_expiry(
    simulator: RawSimulator, account: tuple[str, str], storage: BackBlaze
) -> None:
    await storage.check()
    expire_all_tokens(simulator)
    del simulator.key_id_to_key[account[0]]
    with pytest.raises(StorageAuthorizationError):
        await storage.list_files()


async def test_failed_upload_keeps_the_local_file(
    simulator: RawSimulator, storage: BackBlaze, tmp_path: Path
) -> None:
    local = tmp_path / "precious.txt"
    local.write_bytes(b"do not lose me")

    simulator.set_upload_errors([b2_exc.BadRequest("rejected", "bad_request")])
    with pytest.raises(StorageError) as info:
        await storage.upload_file(local, "precious.txt")
    assert info.value.status_code == 502
    assert info.value.error_code == "STORAGE_ERROR"
    assert local.read_bytes() == b"do not lose me"

    # Transient errors are retried by b2sdk; when they persist the storage is "unavailable".
    simulator.set_upload_errors([b2_exc.ServiceError("down") for _ in range(10)])
    with pytest.raises(StorageUnavailableError) as unavailable:
        await storage.upload_file(local, "precious.txt")
    assert unavailable.value.status_code == 503
    assert local.read_bytes() == b"do not lose me"
    simulator.upload_errors.clear()

    assert [f.file_name for f in await storage.list_files()] == []
    uploaded = await storage.upload_file(local, "precious.txt")
    assert uploaded.size == len(b"do not lose me")
    assert local.read_bytes() == b"do not lose me"


async def test_a_retried_upload_resends_the_whole_stream(
    simulator: RawSimulator, storage: BackBlaze
) -> None:
    data = b"retry me " * 50
    stream = io.BytesIO(data)
    simulator.set_upload_errors([b2_exc.ServiceError("blip")])
    uploaded = await storage.upload_stream(
        stream, "retried.txt", size=len(data), sha1=sha1_hex(data)
    )
    assert uploaded.size == len(data)
    assert await storage.download_bytes(uploaded.file_id) == data
