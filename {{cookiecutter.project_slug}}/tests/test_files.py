"""The /files API end to end, with storage on b2sdk's in-memory B2 (`RawSimulator`)."""

import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from b2sdk.v2 import RawSimulator
from b2sdk.v2 import exception as b2_exc
from fastapi import FastAPI, UploadFile
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers

from app.api.v1.deps.storage import get_storage
from app.core.db import Database
from app.core.exceptions import ConflictError, PayloadTooLargeError
from app.main import create_app
from app.models.user import User
from app.repos.file import FileRepository
from app.services.back_blaze_b2 import BackBlaze, StorageError
from app.services.files import FileService
from tests.helpers import (
    TEST_SETTINGS,
    UserFactory,
    auth_headers,
    impatient_database,
    make_settings,
    make_storage,
    uncommitted_write,
)

BUCKET = TEST_SETTINGS.b2_bucket_name  # created by the `b2_storage` fixture
FILES = "/api/v1/files"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def use(app: FastAPI, service: BackBlaze) -> None:
    async def storage() -> BackBlaze:
        return service

    app.dependency_overrides[get_storage] = storage


async def upload(
    client: AsyncClient,
    user: User,
    content: bytes = b"hello, storage\n",
    *,
    name: str = "hello.txt",
    content_type: str = "text/plain",
) -> Response:
    return await client.post(
        FILES, headers=auth_headers(user), files={"file": (name, content, content_type)}
    )


async def refuse_to_save(*_args: object) -> None:
    raise ConflictError("refused")


def assert_error(response: Response, status_code: int, error_code: str) -> None:
    assert response.status_code == status_code, response.text
    body = response.json()
    assert set(body) == {"detail", "error_code", "timestamp"}
    assert body["error_code"] == error_code
    assert "Traceback" not in body["detail"]


async def test_upload_list_read_download_delete(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    user = await make_user()
    headers = auth_headers(user)
    content = b"hello, storage\n"

    created = await upload(client, user, content)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "name", "size", "content_type", "checksum", "created_at"}
    assert body["name"] == "hello.txt"
    assert body["size"] == len(content)
    assert body["content_type"] == "text/plain"
    assert body["checksum"] == hashlib.sha1(content, usedforsecurity=False).hexdigest()

    [stored] = await b2_storage.list_files()
    assert stored.file_name == f"{user.id}/{body['id']}/hello.txt"
    assert await b2_storage.download_bytes(stored.file_id) == content

    listed = await client.get(FILES, headers=headers)
    assert listed.status_code == 200
    assert listed.json() == {"items": [body], "total": 1, "offset": 0, "limit": 20}

    read = await client.get(f"{FILES}/{body['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json() == body

    link = await client.get(f"{FILES}/{body['id']}/download", headers=headers)
    assert link.status_code == 200
    assert link.json()["expires_in"] == TEST_SETTINGS.b2_link_valid_seconds
    public_url = await b2_storage.get_public_url(stored.file_name)
    assert link.json()["url"].startswith(public_url + "?Authorization=")

    deleted = await client.delete(f"{FILES}/{body['id']}", headers=headers)
    assert deleted.status_code == 204
    assert await b2_storage.list_files() == []
    assert_error(await client.get(f"{FILES}/{body['id']}", headers=headers), 404, "NOT_FOUND")
    assert (await client.get(FILES, headers=headers)).json()["total"] == 0


async def test_larger_upload_is_streamed_intact(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    # Larger than the simulator's part size: stored as a large file, in parts.
    content = bytes(range(256)) * 40
    user = await make_user()
    created = await upload(client, user, content, name="scan.pdf", content_type="application/pdf")
    assert created.status_code == 201, created.text
    [stored] = await b2_storage.list_files()
    assert await b2_storage.download_bytes(stored.file_id) == content
    assert created.json()["checksum"] == hashlib.sha1(content, usedforsecurity=False).hexdigest()


async def test_an_upload_larger_than_the_body_limit_is_accepted(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    """MAX_BODY_BYTES is for JSON and forms; an upload has B2_UPLOAD_MAX_BYTES."""
    content = bytes(range(256)) * (2 * TEST_SETTINGS.max_body_bytes // 256)
    assert TEST_SETTINGS.max_body_bytes < len(content) < TEST_SETTINGS.b2_upload_max_bytes
    created = await upload(client, await make_user(), content, name="big.txt")
    assert created.status_code == 201, created.text
    [stored] = await b2_storage.list_files()
    assert await b2_storage.download_bytes(stored.file_id) == content


async def test_pagination(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    for number in range(3):
        assert (await upload(client, user, name=f"{number}.txt")).status_code == 201
    page = await client.get(FILES, headers=auth_headers(user), params={"offset": 1, "limit": 1})
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["offset"], body["limit"]) == (3, 1, 1)
    assert [item["name"] for item in body["items"]] == ["1.txt"]
    bad = await client.get(FILES, headers=auth_headers(user), params={"limit": 101})
    assert_error(bad, 422, "VALIDATION_ERROR")


async def test_content_type_parameters_and_paths_are_dropped(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    created = await upload(
        client, user, name="../../etc/notes.txt", content_type="Text/Plain; charset=utf-8"
    )
    assert created.status_code == 201, created.text
    assert created.json()["content_type"] == "text/plain"
    assert created.json()["name"] == "notes.txt"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("n" * 246 + ".txt", 201),  # 250 bytes: the most b2sdk takes in one path segment
        ("n" * 247 + ".txt", 422),
        ("\u00e9" * 124 + ".txt", 422),  # 128 characters, but 252 bytes in UTF-8
    ],
    ids=["250-bytes", "251-bytes", "252-bytes-in-128-characters"],
)
async def test_file_names_are_limited_in_bytes(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze, name: str, status: int
) -> None:
    response = await upload(client, await make_user(), name=name)
    assert response.status_code == status, response.text
    if status == 422:
        assert_error(response, 422, "VALIDATION_ERROR")
        assert "250 bytes" in response.json()["detail"]
        assert await b2_storage.list_files() == []


async def test_disallowed_content_type_is_415(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    user = await make_user()
    response = await upload(client, user, b"GIF89a", name="anim.gif", content_type="image/gif")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "image/gif" in response.json()["detail"]
    assert await b2_storage.list_files() == []
    assert (await client.get(FILES, headers=auth_headers(user))).json()["total"] == 0


async def test_too_large_is_413(
    client: AsyncClient,
    make_user: UserFactory,
    b2_storage: BackBlaze,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TEST_SETTINGS, "b2_upload_max_bytes", len(PNG))
    user = await make_user()
    exact = await upload(client, user, PNG, name="ok.png", content_type="image/png")
    assert exact.status_code == 201, exact.text

    response = await upload(client, user, PNG + b"!", name="big.png", content_type="image/png")
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert [f.file_name.rsplit("/", 1)[-1] for f in await b2_storage.list_files()] == ["ok.png"]
    assert (await client.get(FILES, headers=auth_headers(user))).json()["total"] == 1


async def test_size_is_counted_while_streaming_when_not_declared(
    session: AsyncSession, b2_storage: BackBlaze, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TEST_SETTINGS, "b2_upload_max_bytes", 100_000)
    files = FileService(session, b2_storage, TEST_SETTINGS)
    headers = Headers({"content-type": "text/plain"})
    # No declared size: the limit is enforced by counting chunks as they are read.
    oversized = UploadFile(io.BytesIO(b"x" * 100_001), filename="big.txt", headers=headers)
    with pytest.raises(PayloadTooLargeError):
        await files.upload(uuid.uuid4(), oversized)
    assert await b2_storage.list_files() == []


async def test_another_users_file_is_not_found(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    owner, other = await make_user(), await make_user()
    file_id = (await upload(client, owner)).json()["id"]
    headers = auth_headers(other)

    assert_error(await client.get(f"{FILES}/{file_id}", headers=headers), 404, "NOT_FOUND")
    download = await client.get(f"{FILES}/{file_id}/download", headers=headers)
    assert_error(download, 404, "NOT_FOUND")
    assert_error(await client.delete(f"{FILES}/{file_id}", headers=headers), 404, "NOT_FOUND")
    assert (await client.get(FILES, headers=headers)).json()["total"] == 0

    assert (await client.get(f"{FILES}/{file_id}", headers=auth_headers(owner))).status_code == 200
    assert len(await b2_storage.list_files()) == 1


async def test_unknown_and_malformed_ids(client: AsyncClient, make_user: UserFactory) -> None:
    headers = auth_headers(await make_user())
    unknown = await client.get(f"{FILES}/{uuid.uuid4()}", headers=headers)
    assert_error(unknown, 404, "NOT_FOUND")
    malformed = await client.get(f"{FILES}/not-a-uuid", headers=headers)
    assert_error(malformed, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", FILES),
        ("GET", FILES),
        ("GET", f"{FILES}/{uuid.UUID(int=1)}"),
        ("GET", f"{FILES}/{uuid.UUID(int=1)}/download"),
        ("DELETE", f"{FILES}/{uuid.UUID(int=1)}"),
    ],
)
async def test_every_route_needs_authentication(
    client: AsyncClient, method: str, path: str
) -> None:
    files = {"file": ("a.txt", b"a", "text/plain")} if method == "POST" else None
    response = await client.request(method, path, files=files)
    assert_error(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_rejected_credentials_are_503_not_500(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    b2_simulator: RawSimulator,
    b2_account: tuple[str, str],
) -> None:
    use(app, make_storage(b2_simulator, b2_account[0], "wrong-key").select_bucket(BUCKET))
    user = await make_user()
    response = await upload(client, user)
    assert_error(response, 503, "STORAGE_UNAUTHORIZED")
    assert "wrong-key" not in response.text
    assert (await client.get(FILES, headers=auth_headers(user))).json()["total"] == 0


async def test_missing_bucket_is_503(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    b2_storage.select_bucket("no-such-bucket")
    assert_error(await upload(client, await make_user()), 503, "BUCKET_NOT_FOUND")


async def test_failed_upload_is_502_and_records_nothing(
    client: AsyncClient, make_user: UserFactory, b2_simulator: RawSimulator, b2_storage: BackBlaze
) -> None:
    user = await make_user()
    b2_simulator.set_upload_errors([b2_exc.BadRequest("rejected", "bad_request")])
    assert_error(await upload(client, user), 502, "STORAGE_ERROR")
    assert (await client.get(FILES, headers=auth_headers(user))).json()["total"] == 0
    assert await b2_storage.list_files() == []


async def test_unsaved_metadata_removes_the_uploaded_object(
    client: AsyncClient,
    make_user: UserFactory,
    b2_storage: BackBlaze,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FileRepository, "create", refuse_to_save)
    assert_error(await upload(client, await make_user()), 409, "CONFLICT")
    assert await b2_storage.list_files() == []


async def test_orphan_cleanup_failure_still_reports_the_original_error(
    client: AsyncClient,
    make_user: UserFactory,
    b2_storage: BackBlaze,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def storage_down(*_args: object) -> None:
        raise StorageError()

    monkeypatch.setattr(FileRepository, "create", refuse_to_save)
    monkeypatch.setattr(b2_storage, "delete_file", storage_down)
    assert_error(await upload(client, await make_user()), 409, "CONFLICT")


def test_the_storage_is_built_in_the_lifespan_from_settings_without_io(app: FastAPI) -> None:
    # The test settings hold no real key: any call to B2 while building it would have failed.
    assert isinstance(app.state.storage, BackBlaze)
    assert app.state.storage.bucket_name == TEST_SETTINGS.b2_bucket_name


async def test_failed_storage_delete_keeps_the_record(
    client: AsyncClient,
    make_user: UserFactory,
    b2_simulator: RawSimulator,
    b2_account: tuple[str, str],
    b2_storage: BackBlaze,
) -> None:
    user = await make_user()
    file_id = (await upload(client, user)).json()["id"]
    # The key is revoked and the token expires: B2 refuses the delete.
    for token in list(b2_simulator.auth_token_to_key):
        b2_simulator.expire_auth_token(token)
    del b2_simulator.key_id_to_key[b2_account[0]]

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers(user))
    assert_error(response, 503, "STORAGE_UNAUTHORIZED")
    assert (await client.get(f"{FILES}/{file_id}", headers=auth_headers(user))).status_code == 200
    link = await client.get(f"{FILES}/{file_id}/download", headers=auth_headers(user))
    assert_error(link, 503, "STORAGE_UNAUTHORIZED")


async def test_object_already_gone_from_storage_still_deletes_the_record(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    user = await make_user()
    file_id = (await upload(client, user)).json()["id"]
    [stored] = await b2_storage.list_files()
    await b2_storage.delete_file(stored.file_id, stored.file_name)

    response = await client.delete(f"{FILES}/{file_id}", headers=auth_headers(user))
    assert response.status_code == 204
    assert (await client.get(FILES, headers=auth_headers(user))).json()["total"] == 0


async def test_a_user_who_owns_files_cannot_be_deleted(
    client: AsyncClient, make_user: UserFactory, b2_storage: BackBlaze
) -> None:
    admin, owner = await make_user(is_superuser=True), await make_user()
    file_id = (await upload(client, owner)).json()["id"]

    refused = await client.delete(f"/api/v1/users/{owner.id}", headers=auth_headers(admin))
    assert_error(refused, 409, "CONFLICT")
    assert (await client.get(f"{FILES}/{file_id}", headers=auth_headers(owner))).status_code == 200
    assert len(await b2_storage.list_files()) == 1

    deleted = await client.delete(f"{FILES}/{file_id}", headers=auth_headers(owner))
    assert deleted.status_code == 204
    gone = await client.delete(f"/api/v1/users/{owner.id}", headers=auth_headers(admin))
    assert gone.status_code == 204


async def test_storage_outage_degrades_readiness_and_the_file_routes_only(
    app: FastAPI,
    committed_client: AsyncClient,
    b2_simulator: RawSimulator,
    b2_account: tuple[str, str],
) -> None:
    """B2 is a soft dependency: readiness stays 200 and reports it; only /files fails."""
    ready = await committed_client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"] == "ok"

    use(app, make_storage(b2_simulator, b2_account[0], "wrong-key").select_bucket(BUCKET))
    degraded = await committed_client.get("/health/ready")
    assert degraded.status_code == 200, degraded.text
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["checks"] == {**degraded.json()["checks"], "storage": "down"}
    signup = await committed_client.post(
        "/api/v1/auth/signup",
        json={
            "username": "stillhere",
            "email": "stillhere@example.com",
            "first_name": "Still",
            "last_name": "Here",
            "password": "a sound password",
        },
    )
    assert signup.status_code == 201, signup.text


async def test_file_reads_do_not_queue_behind_a_writer(
    app: FastAPI,
    committed_client: AsyncClient,
    b2_storage: BackBlaze,
    use_database: Callable[[Database], None],
) -> None:
    """Listing, reading and linking a file only read: while another transaction holds
    uncommitted writes and their locks, they answer at once from what is committed.
    """
    async with app.state.database.session_factory() as session:
        owner = User(
            username="fileowner",
            email="fileowner@example.com",
            first_name="File",
            last_name="Owner",
            hashed_password="not used",
        )
        session.add(owner)
        await session.commit()
    created = await upload(committed_client, owner)
    assert created.status_code == 201, created.text
    file_id = created.json()["id"]
    database = impatient_database()
    use_database(database)
    headers = auth_headers(owner)
    try:
        async with uncommitted_write(app.state.database, "UPDATE files SET name = 'new.txt'"):
            listed = await committed_client.get(FILES, headers=headers)
            read = await committed_client.get(f"{FILES}/{file_id}", headers=headers)
            link = await committed_client.get(f"{FILES}/{file_id}/download", headers=headers)
    finally:
        await database.dispose()
    assert listed.status_code == 200, listed.text
    assert [item["name"] for item in listed.json()["items"]] == ["hello.txt"]
    assert read.status_code == 200, read.text
    assert read.json()["name"] == "hello.txt"
    assert link.status_code == 200, link.text


async def test_openapi_documents_the_error_responses(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"401", "413", "415", "502", "503"} <= set(paths[FILES]["post"]["responses"])
    assert "404" in paths[FILES + "/{file_id}"]["get"]["responses"]


async def test_malformed_multipart_is_a_documented_400(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    response = await client.post(
        FILES,
        content=b"--fuzz\r\n\xbf--fuzz--\r\n",
        headers={**auth_headers(user), "Content-Type": "multipart/form-data; boundary=fuzz"},
    )
    assert_error(response, 400, "BAD_REQUEST")
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "400" in paths[FILES]["post"]["responses"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_upload_is_refused_before_it_is_spooled(
    app: FastAPI, make_user: UserFactory, b2_storage: BackBlaze, declared: bool
) -> None:
    """50 MB against a 1 MiB limit: 413 at once, and no more than the limit is ever read (so
    no temporary file can grow past it).
    """
    limit = 1024 * 1024
    other = create_app(make_settings(b2_upload_max_bytes=limit))
    other.dependency_overrides.update(app.dependency_overrides)  # the test's database, B2
    user = await make_user()
    chunks_read = 0
    head = (
        b'--edge\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
    )

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        yield head
        for _ in range(50 * 1024):
            chunks_read += 1
            yield b"x" * 1024
        yield b"\r\n--edge--\r\n"

    headers = {**auth_headers(user), "Content-Type": "multipart/form-data; boundary=edge"}
    if declared:
        headers["Content-Length"] = str(len(head) + 50 * 1024 * 1024 + 12)
    async with (
        other.router.lifespan_context(other),
        AsyncClient(transport=ASGITransport(app=other), base_url="http://test") as client,
    ):
        response = await client.post(FILES, content=fifty_megabytes(), headers=headers)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert chunks_read <= (1 if declared else limit // 1024 + 17)
    assert await b2_storage.list_files() == []
