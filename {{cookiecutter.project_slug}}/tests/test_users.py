import uuid

import pytest
from httpx import AsyncClient

from tests.helpers import DEFAULT_PASSWORD, UserFactory, auth_headers


async def test_read_me(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.get("/api/v1/users/me", headers=auth_headers(user))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.id)
    assert "hashed_password" not in body


async def test_update_me(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.patch(
        "/api/v1/users/me",
        headers=auth_headers(user),
        json={"first_name": "Augusta", "email": "Ada@Analytical.org"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["first_name"] == "Augusta"
    assert body["email"] == "ada@analytical.org"
    assert body["last_name"] == "Lovelace"
    assert body["updated_at"] >= body["created_at"]


@pytest.mark.parametrize("field", ["email", "username"])
async def test_update_me_to_a_taken_value_is_409(
    client: AsyncClient, make_user: UserFactory, field: str
) -> None:
    user, other = await make_user(), await make_user()
    response = await client.patch(
        "/api/v1/users/me", headers=auth_headers(user), json={field: getattr(other, field)}
    )
    assert response.status_code == 409
    me = await client.get("/api/v1/users/me", headers=auth_headers(user))
    assert me.json()[field] == getattr(user, field)


@pytest.mark.parametrize(
    "payload",
    [{"email": None}, {"is_superuser": True}, {"username": "x"}, {"last_name": "B\x00"}],
    ids=["null", "privileged-field", "invalid", "nul-character"],
)
async def test_update_me_rejects_bad_fields(
    client: AsyncClient, make_user: UserFactory, payload: dict[str, object]
) -> None:
    user = await make_user()
    response = await client.patch("/api/v1/users/me", headers=auth_headers(user), json=payload)
    assert response.status_code == 422


async def test_change_password_revokes_refresh_tokens(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    login = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    refresh_token = login.json()["refresh_token"]

    response = await client.post(
        "/api/v1/users/me/password",
        headers=auth_headers(user),
        json={"current_password": DEFAULT_PASSWORD, "new_password": "a brand new secret"},
    )
    assert response.status_code == 204

    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert refresh.status_code == 401
    old = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 401
    new = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": "a brand new secret"}
    )
    assert new.status_code == 200


async def test_change_password_needs_the_current_one(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    response = await client.post(
        "/api/v1/users/me/password",
        headers=auth_headers(user),
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


async def test_admin_lists_users_by_page(client: AsyncClient, make_user: UserFactory) -> None:
    admin = await make_user(is_superuser=True)
    for _ in range(4):
        await make_user()
    response = await client.get(
        "/api/v1/users", params={"offset": 1, "limit": 2}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5
    assert (body["offset"], body["limit"]) == (1, 2)
    assert len(body["items"]) == 2
    everyone = await client.get("/api/v1/users", headers=auth_headers(admin))
    ids = [item["id"] for item in everyone.json()["items"]]
    assert [item["id"] for item in body["items"]] == ids[1:3]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 2**63}, {"limit": "many"}],
)
async def test_admin_list_validates_paging(
    client: AsyncClient, make_user: UserFactory, params: dict[str, object]
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.get("/api/v1/users", params=params, headers=auth_headers(admin))
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/{id}"),
        ("PATCH", "/api/v1/users/{id}"),
        ("DELETE", "/api/v1/users/{id}"),
    ],
)
async def test_admin_routes_refuse_regular_users(
    client: AsyncClient, make_user: UserFactory, method: str, path: str
) -> None:
    user = await make_user()
    response = await client.request(
        method, path.format(id=user.id), headers=auth_headers(user), json={}
    )
    assert response.status_code == 403


async def test_admin_reads_updates_and_deletes_a_user(
    client: AsyncClient, make_user: UserFactory
) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    headers = auth_headers(admin)
    url = f"/api/v1/users/{user.id}"

    assert (await client.get(url, headers=headers)).json()["username"] == user.username
    patched = await client.patch(
        url, headers=headers, json={"is_active": False, "is_superuser": True}
    )
    assert patched.status_code == 200
    assert (patched.json()["is_active"], patched.json()["is_superuser"]) == (False, True)

    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404


async def test_admin_patch_conflict_is_409(client: AsyncClient, make_user: UserFactory) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    response = await client.patch(
        f"/api/v1/users/{user.id}", headers=auth_headers(admin), json={"email": admin.email}
    )
    assert response.status_code == 409


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_admin_unknown_and_malformed_ids(
    client: AsyncClient, make_user: UserFactory, method: str
) -> None:
    admin = await make_user(is_superuser=True)
    headers = auth_headers(admin)
    unknown = await client.request(
        method, f"/api/v1/users/{uuid.uuid4()}", headers=headers, json={}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "NOT_FOUND"
    malformed = await client.request(method, "/api/v1/users/not-a-uuid", headers=headers, json={})
    assert malformed.status_code == 422


@pytest.mark.parametrize(
    ("method", "body", "allowed"),
    [
        ("PATCH", {"is_active": False}, 200),
        ("PATCH", {"is_superuser": False}, 200),
        ("DELETE", None, 204),
    ],
    ids=["deactivate", "demote", "delete"],
)
async def test_the_last_active_superuser_cannot_lock_everyone_out(
    client: AsyncClient,
    make_user: UserFactory,
    method: str,
    body: dict[str, bool] | None,
    allowed: int,
) -> None:
    admin = await make_user(is_superuser=True)
    await make_user(is_superuser=True, is_active=False)  # an inactive one does not count
    url = f"/api/v1/users/{admin.id}"
    refused = await client.request(method, url, headers=auth_headers(admin), json=body)
    assert refused.status_code == 409
    assert refused.json()["error_code"] == "LAST_SUPERUSER"
    assert (await client.get("/api/v1/users/me", headers=auth_headers(admin))).status_code == 200

    await make_user(is_superuser=True)
    response = await client.request(method, url, headers=auth_headers(admin), json=body)
    assert response.status_code == allowed, response.text
