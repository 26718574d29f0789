"""Password reset through the job queue and a real SMTP server: request, mail, confirm.

{%- if cookiecutter.use_redis %}
The jobs go through Redis and run in a worker's broker consuming the queue in this process
(the template's own tests run `taskiq worker` as a separate process too).
{%- else %}
The jobs run in the app's process after the response, as in production without Redis.
{%- endif %}
"""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from aiosmtplib import SMTPConnectError
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
{%- if cookiecutter.use_redis %}
from loguru import logger
{%- endif %}
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utc_now
from app.core.config import Settings
from app.jobs.context import JobContext
from app.jobs.password_reset import send_password_reset
from app.main import create_app
from app.models import PasswordResetToken, User
from app.schemas.password_reset import ACCEPTED_DETAIL
from app.services.email import EmailTemplates, Mailer
from app.services.password_reset import hash_reset_token
from tests.helpers import (
    DEFAULT_PASSWORD,
    MailCatcher,
    UserFactory,
    login_tokens,
    mail_parts,
    {%- if cookiecutter.use_redis %}
    running_jobs,
    {%- endif %}
)

REQUEST = "/api/v1/auth/password-reset/request"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"
TOKEN_IN_LINK = re.compile(r"https://app\.example\.com/reset-password\?token=([A-Za-z0-9_-]+)")
SIGNUP = {
    "username": "forgetful",
    "email": "forgetful@example.com",
    "first_name": "Fay",
    "last_name": "Getful",
    "password": DEFAULT_PASSWORD,
}
{%- if cookiecutter.use_redis %}

pytestmark = pytest.mark.usefixtures("redis_required")
{%- endif %}


@pytest.fixture
async def mail_client(
    clean_database: None, mail_settings: Callable[..., Settings]
) -> AsyncIterator[AsyncClient]:
    """An app that mails through the test SMTP server, with its jobs running; data committed."""
    settings = mail_settings()
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        {%- if cookiecutter.use_redis %}
        running_jobs(settings),
        {%- endif %}
        AsyncClient(transport=ASGITransport(app=application), base_url="http://test") as http,
    ):
        yield http


def token_from(text: str) -> str:
    match = TOKEN_IN_LINK.search(text)
    assert match, text
    return match.group(1)


async def test_a_forgotten_password_is_reset_through_the_mailed_link(
    mail_client: AsyncClient, outbox: MailCatcher
) -> None:
    assert (await mail_client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    old = await login_tokens(mail_client, SIGNUP["username"], DEFAULT_PASSWORD)

    requested = await mail_client.post(REQUEST, json={"email": "Forgetful@Example.com"})
    assert requested.status_code == 202, requested.text
    assert requested.json() == {"detail": ACCEPTED_DETAIL}

    message = await outbox.wait_for(SIGNUP["email"])
    assert message["From"] == "My Tests <tests@example.com>"
    assert message["Subject"] == "Reset your My Service password"
    text, html = mail_parts(message)
    token = token_from(text)
    assert token == token_from(html)
    assert "Hello Fay," in text

    confirmed = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert confirmed.status_code == 204, confirmed.text

    failed = await mail_client.post(
        "/api/v1/auth/login", data={"username": "forgetful", "password": DEFAULT_PASSWORD}
    )
    assert failed.status_code == 401
    await login_tokens(mail_client, SIGNUP["username"], NEW_PASSWORD)
    refreshed = await mail_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
    )
    assert refreshed.status_code == 401
    me = await mail_client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {old['access_token']}"}
    )
    assert me.status_code == 401
    assert me.json()["detail"] == "Token issued before the credentials changed"

    again = await mail_client.post(
        CONFIRM, json={"token": token, "new_password": "yet another one"}
    )
    assert again.status_code == 400
    assert again.json()["error_code"] == "RESET_TOKEN_USED"


async def test_unknown_addresses_get_the_same_answer_and_no_mail(
    mail_client: AsyncClient, outbox: MailCatcher
) -> None:
    assert (await mail_client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    unknown = await mail_client.post(REQUEST, json={"email": "nobody@example.com"})
    known = await mail_client.post(REQUEST, json={"email": SIGNUP["email"]})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    await outbox.wait_for(SIGNUP["email"])
    assert outbox.to("nobody@example.com") == []


async def test_a_second_request_invalidates_the_first_link(
    mail_client: AsyncClient, outbox: MailCatcher
) -> None:
    assert (await mail_client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    tokens = []
    for n in (1, 2):
        assert (await mail_client.post(REQUEST, json={"email": SIGNUP["email"]})).status_code == 202
        tokens.append(token_from(mail_parts(await outbox.wait_for(SIGNUP["email"], n))[0]))
    first, second = tokens
    stale = await mail_client.post(CONFIRM, json={"token": first, "new_password": NEW_PASSWORD})
    assert stale.status_code == 400
    assert stale.json()["error_code"] == "RESET_TOKEN_SUPERSEDED"
    fresh = await mail_client.post(CONFIRM, json={"token": second, "new_password": NEW_PASSWORD})
    assert fresh.status_code == 204


async def test_a_request_of_one_user_leaves_another_users_link_valid(
    mail_client: AsyncClient, outbox: MailCatcher
) -> None:
    """A request supersedes the earlier links of its own user only."""
    other = {**SIGNUP, "username": "other", "email": "other@example.com"}
    tokens = []
    # The first user asks first: the other's later request must not supersede that link.
    for account in (SIGNUP, other):
        assert (await mail_client.post("/api/v1/auth/signup", json=account)).status_code == 201
        requested = await mail_client.post(REQUEST, json={"email": account["email"]})
        assert requested.status_code == 202
        tokens.append(token_from(mail_parts(await outbox.wait_for(account["email"]))[0]))
    for token in tokens:
        confirmed = await mail_client.post(
            CONFIRM, json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert confirmed.status_code == 204, confirmed.text


{%- if cookiecutter.use_redis %}


async def test_without_the_job_queue_a_request_gets_503(
    mail_settings: Callable[..., Settings],
) -> None:
    application = create_app(mail_settings(redis_url="redis://127.0.0.1:1/0"))
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="WARNING")
    try:
        async with (
            application.router.lifespan_context(application),
            AsyncClient(transport=ASGITransport(app=application), base_url="http://test") as http,
        ):
            response = await http.post(REQUEST, json={"email": SIGNUP["email"]})
    finally:
        logger.remove(sink)
    assert "Job queue unreachable (ConnectionError): send_password_reset not queued\n" in lines
    assert response.status_code == 503
    assert response.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"
{%- endif %}


async def test_requests_are_limited_per_address_asked_for(committed_client: AsyncClient) -> None:
    # 5/hour by default, whoever asks.
    statuses = [
        (await committed_client.post(REQUEST, json={"email": "Target@example.com"})).status_code
        for _ in range(6)
    ]
    assert statuses == [202] * 5 + [429]
    other = await committed_client.post(REQUEST, json={"email": "other@example.com"})
    assert other.status_code == 202


async def test_requests_are_limited_per_client_address(committed_client: AsyncClient) -> None:
    statuses = [
        (await committed_client.post(REQUEST, json={"email": f"u{n}@example.com"})).status_code
        for n in range(21)
    ]
    assert statuses == [202] * 20 + [429]
    assert "Retry-After" in (await committed_client.post(REQUEST, json={"email": "x@x.io"})).headers


# --- The job -----------------------------------------------------------------------------------


@pytest.fixture
def job_context(app: FastAPI, mail_settings: Callable[..., Settings]) -> Callable[..., JobContext]:
    """What the job gets, on the app's (committed) database; mail to the test server."""

    def context(**overrides: object) -> JobContext:
        settings = mail_settings(**overrides)
        return JobContext(settings, app.state.database, Mailer(settings), EmailTemplates())

    return context


async def stored_resets(app: FastAPI) -> list[PasswordResetToken]:
    async with app.state.database.session_factory() as session:
        return list((await session.scalars(select(PasswordResetToken))).all())


async def test_the_job_sends_one_mail_per_request_however_often_it_runs(
    app: FastAPI,
    committed_client: AsyncClient,
    outbox: MailCatcher,
    job_context: Callable[..., JobContext],
) -> None:
    assert (await committed_client.post("/api/v1/auth/signup", json=SIGNUP)).status_code == 201
    request = {"email": SIGNUP["email"], "request_id": uuid.uuid4(), "requested_at": utc_now()}

    # A first run whose mail fails (the server is unreachable) leaves its token unsent...
    with pytest.raises(SMTPConnectError):
        await send_password_reset(**request, context=job_context(smtp_port=1))
    [unsent] = await stored_resets(app)
    assert unsent.sent_at is None

    # ...the retry sends a fresh token in the same row, and runs after that send nothing.
    for _ in range(2):
        await send_password_reset(**request, context=job_context())
    [message] = outbox.to(SIGNUP["email"])
    [sent] = await stored_resets(app)
    assert sent.id == unsent.id
    assert sent.sent_at is not None
    assert sent.token_hash != unsent.token_hash
    assert sent.token_hash == hash_reset_token(token_from(mail_parts(message)[0]))


async def test_the_job_mails_no_inactive_account(
    app: FastAPI,
    committed_client: AsyncClient,
    outbox: MailCatcher,
    job_context: Callable[..., JobContext],
) -> None:
    created = await committed_client.post("/api/v1/auth/signup", json=SIGNUP)
    async with app.state.database.engine.begin() as connection:
        await connection.execute(
            User.__table__.update()
            .where(User.__table__.c.id == uuid.UUID(created.json()["id"]))
            .values(is_active=False)
        )
    await send_password_reset(SIGNUP["email"], uuid.uuid4(), utc_now(), context=job_context())
    assert outbox.messages == []
    assert await stored_resets(app) == []


# --- Confirmation refusals (tokens stored directly, in the test's transaction) --------------


async def store_reset(
    session: AsyncSession, user_id: uuid.UUID, token: str, **fields: object
) -> PasswordResetToken:
    values: dict[str, object] = {
        "requested_at": utc_now(),
        "expires_at": utc_now() + timedelta(minutes=30),
        "sent_at": utc_now(),
        **fields,
    }
    stored = PasswordResetToken(
        user_id=user_id, request_id=uuid.uuid4(), token_hash=hash_reset_token(token), **values
    )
    session.add(stored)
    await session.flush()
    return stored


@pytest.mark.parametrize(
    ("fields", "error_code"),
    [
        ({"used_at": utc_now()}, "RESET_TOKEN_USED"),
        ({"expires_at": utc_now() - timedelta(seconds=1)}, "RESET_TOKEN_EXPIRED"),
    ],
    ids=["used", "expired"],
)
async def test_used_and_expired_tokens_are_refused(
    client: AsyncClient,
    session: AsyncSession,
    make_user: UserFactory,
    fields: dict[str, object],
    error_code: str,
) -> None:
    user = await make_user()
    await store_reset(session, user.id, "the-token", **fields)
    response = await client.post(CONFIRM, json={"token": "the-token", "new_password": NEW_PASSWORD})
    assert response.status_code == 400
    assert response.json()["error_code"] == error_code
    login = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    "token",
    ["no-such-token", "\x00", "é" * 128, "' OR 1=1 --"],
    ids=["unknown", "nul", "non-ascii", "sql"],
)
async def test_unknown_tokens_are_refused(client: AsyncClient, token: str) -> None:
    response = await client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 400
    assert response.json()["error_code"] == "RESET_TOKEN_INVALID"


async def test_a_token_of_an_inactive_user_is_refused(
    client: AsyncClient, session: AsyncSession, make_user: UserFactory
) -> None:
    user = await make_user(is_active=False)
    await store_reset(session, user.id, "inactive-token")
    response = await client.post(
        CONFIRM, json={"token": "inactive-token", "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "RESET_TOKEN_INVALID"


async def test_one_link_confirmed_twice_at_once_wins_once(
    app: FastAPI, committed_client: AsyncClient
) -> None:
    created = await committed_client.post("/api/v1/auth/signup", json=SIGNUP)
    async with app.state.database.session_factory() as session:
        await store_reset(session, uuid.UUID(created.json()["id"]), "raced-token")
        await session.commit()
    body = {"token": "raced-token", "new_password": NEW_PASSWORD}
    first, second = await asyncio.gather(
        committed_client.post(CONFIRM, json=body), committed_client.post(CONFIRM, json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [204, 400]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (REQUEST, {"email": "not-an-address"}),
        (REQUEST, {"email": "nul\x00@example.com"}),
        (REQUEST, {"email": "a" * 300 + "@example.com"}),
        (REQUEST, {}),
        (CONFIRM, {"token": "x" * 129, "new_password": NEW_PASSWORD}),
        (CONFIRM, {"token": "", "new_password": NEW_PASSWORD}),
        (CONFIRM, {"token": "t", "new_password": "short"}),
        (CONFIRM, {"token": "t", "new_password": "é" * 40}),
        (CONFIRM, {"token": ["t"], "new_password": NEW_PASSWORD}),
    ],
    ids=[
        "bad-email",
        "nul-email",
        "long-email",
        "no-email",
        "long-token",
        "empty-token",
        "short-password",
        "password-over-72-bytes",
        "token-not-a-string",
    ],
)
async def test_malformed_input_is_a_clear_422(
    client: AsyncClient, path: str, body: dict[str, object]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_confirmations_are_limited_per_client_address(client: AsyncClient) -> None:
    body = {"token": "guess", "new_password": NEW_PASSWORD}
    statuses = [(await client.post(CONFIRM, json=body)).status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]


async def test_the_reset_routes_document_their_answers(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    confirm = schema["paths"][CONFIRM]["post"]
    examples = confirm["responses"]["400"]["content"]["application/json"]["examples"]
    assert set(examples) == {
        "RESET_TOKEN_INVALID",
        "RESET_TOKEN_EXPIRED",
        "RESET_TOKEN_USED",
        "RESET_TOKEN_SUPERSEDED",
    }
    request = schema["paths"][REQUEST]["post"]
    assert set(request["responses"]) >= {"202", "422", "429"}
