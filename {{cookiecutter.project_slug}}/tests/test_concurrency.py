"""Races across real connections: the database, not luck, decides the winner."""

import asyncio

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from app.models import User

SIGNUP = {
    "email": "race@example.com",
    "first_name": "Rae",
    "last_name": "Sing",
    "password": "a sound password",
}


async def test_concurrent_signups_with_one_email(
    app: FastAPI, committed_client: AsyncClient
) -> None:
    responses = await asyncio.gather(
        *(
            committed_client.post("/api/v1/auth/signup", json={**SIGNUP, "username": f"racer{n}"})
            for n in range(20)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    async with app.state.database.session_factory() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.email == SIGNUP["email"])
        )
    assert count == 1


async def test_concurrent_refreshes_of_one_token(committed_client: AsyncClient) -> None:
    created = await committed_client.post(
        "/api/v1/auth/signup", json={**SIGNUP, "username": "refresher"}
    )
    assert created.status_code == 201
    login = await committed_client.post(
        "/api/v1/auth/login", data={"username": "refresher", "password": SIGNUP["password"]}
    )
    token = login.json()["refresh_token"]
    responses = await asyncio.gather(
        *(
            committed_client.post("/api/v1/auth/refresh", json={"refresh_token": token})
            for _ in range(10)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [401] * 9
