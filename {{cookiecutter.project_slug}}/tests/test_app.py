"""The HTTP envelope: error bodies, request ids, headers, docs, CORS and settings."""

import asyncio
import io
import json
import re
import secrets
from datetime import datetime
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from loguru import logger

from app.core.config import Environment, Settings
from app.core.logger import MAX_PENDING_LINES, LogStream
from app.main import create_app
from tests.helpers import MAIL_SETTINGS, TEST_SETTINGS, make_settings

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_error_body(body: dict[str, object], error_code: str) -> None:
    assert set(body) == {"detail", "error_code", "timestamp"}
    assert body["error_code"] == error_code
    timestamp = datetime.fromisoformat(str(body["timestamp"]))
    assert timestamp.utcoffset() is not None
    assert timestamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


async def test_unknown_route_is_404_with_error_body(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert_error_body(response.json(), "NOT_FOUND")


async def test_wrong_method_is_405_with_error_body(client: AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert_error_body(response.json(), "METHOD_NOT_ALLOWED")


async def test_malformed_json_is_422_with_error_body(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert_error_body(response.json(), "VALIDATION_ERROR")


async def test_json_body_that_is_not_utf8_is_422(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        content=b'{"a": "\xff"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert_error_body(response.json(), "VALIDATION_ERROR")


async def test_unexpected_error_is_a_clean_500() -> None:
    app = create_app(TEST_SETTINGS)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR")
    try:
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "trace-me-42"})
    finally:
        logger.remove(sink)
    assert response.status_code == 500
    assert_error_body(response.json(), "INTERNAL_ERROR")
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == "trace-me-42"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    # The traceback is logged, with the request id bound to the line.
    assert any("RuntimeError: secret internals" in line for line in lines)


async def test_request_id_is_echoed_when_sane(client: AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    insane = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert insane.headers["x-request-id"] != "x" * 500
    assert len(insane.headers["x-request-id"]) == 32
    fresh = await client.get("/health")
    assert fresh.headers["x-request-id"] != insane.headers["x-request-id"]


async def test_security_headers_and_no_hsts_locally(client: AsyncClient) -> None:
    response = await client.get("/health")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "strict-transport-security" not in response.headers


def production_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "current_environment": Environment.PROD,
        "secret_key": secrets.token_urlsafe(64),
        "bcrypt_rounds": 12,  # prod's minimum; these tests hash nothing
        **MAIL_SETTINGS,
        **overrides,
    }
    return make_settings(**values)


async def test_production_adds_hsts_hides_docs_and_logs_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = create_app(production_settings(log_level="INFO"))
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
            response = await client.get("/health", headers={"X-Request-ID": "json-line"})
            docs = await client.get("/docs")
            schema = await client.get("/openapi.json")
    finally:
        create_app(TEST_SETTINGS)  # restore the test logging set-up
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert docs.status_code == 404
    assert schema.status_code == 404
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    request_lines = [r for r in records if r.get("request_id") == "json-line"]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert list(line) == [
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "path",
        "status",
        "duration_ms",
    ]
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    assert (line["level"], line["method"], line["path"], line["status"]) == (
        "INFO",
        "GET",
        "/health",
        200,
    )
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["message"] == f"GET /health 200 {line['duration_ms']}ms"
    # Each of the three requests has its own line and id.
    ids = {r["request_id"] for r in records if r.get("logger") == line["logger"]}
    assert len(ids) == 3


async def test_json_request_line_holds_any_path(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(production_settings(log_level="INFO"))
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
            await client.get('/a"b\\c%0a%e2%80%a8d', headers={"X-Request-ID": "odd-path"})
    finally:
        create_app(TEST_SETTINGS)
    lines = capsys.readouterr().err.splitlines()
    [line] = [json.loads(line) for line in lines if "odd-path" in line]
    assert line["path"] == '/a"b\\c\\x0a\\u2028d'  # control characters escaped, then JSON
    assert line["message"] == f"GET {line['path']} 404 {line['duration_ms']}ms"


class CountingStream(io.StringIO):
    """A text stream that counts its writes (each is a system call on a real pipe) and the
    lines they carry.
    """

    writes = 0
    lines = 0

    def write(self, text: str) -> int:
        self.writes += 1
        self.lines += text.count("\n")
        return super().write(text)


async def test_log_lines_of_one_event_loop_pass_go_out_in_one_write() -> None:
    out = CountingStream()
    stream = LogStream(out)
    stream.write_line("one\n")
    stream.write_line("two\n")
    assert out.getvalue() == ""  # this pass of the loop is not over
    await asyncio.sleep(0)
    assert (out.getvalue(), out.writes) == ("one\ntwo\n", 1)
    # An error goes out at once, after the lines logged before it.
    stream.write_line("three\n")
    stream.write_line("error\n", urgent=True)
    assert out.getvalue() == "one\ntwo\nthree\nerror\n"
    # Closing (loguru removing the sink at shutdown, or the interpreter's exit) loses nothing.
    stream.write_line("last\n")
    stream.close()
    assert out.getvalue().endswith("error\nlast\n")


async def test_a_pass_of_the_event_loop_that_logs_10000_lines_holds_few_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = CountingStream()
    stream = LogStream(out)
    loop = asyncio.get_running_loop()
    scheduled: list[object] = []
    real_call_soon = loop.call_soon

    def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is stream:
            scheduled.append(callback)
        return real_call_soon(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", counting_call_soon)
    lines = [f"line {n}\n" for n in range(10_000)]
    most_held = 0
    for logged, line in enumerate(lines, start=1):  # no await: one pass of the loop
        stream.write_line(line)
        most_held = max(most_held, logged - out.lines)
    assert most_held <= MAX_PENDING_LINES
    # Written in batches as the pass goes, with one write due at its end: not a write, nor a
    # callback, per line.
    assert out.writes <= len(lines) // MAX_PENDING_LINES
    assert len(scheduled) == 1
    await asyncio.sleep(0)
    assert out.getvalue() == "".join(lines)
    assert len(scheduled) == 1
    stream.close()


def test_log_lines_outside_the_event_loop_go_out_at_once() -> None:
    out = CountingStream()
    stream = LogStream(out)
    stream.write_line("starting\n")
    stream.write_line("started\n")
    assert (out.getvalue(), out.writes) == ("starting\nstarted\n", 2)
    stream.close()


def test_docs_switch_overrides_the_environment() -> None:
    assert production_settings(docs_enabled=True).show_docs
    assert not make_settings(docs_enabled=False).show_docs


async def test_cors_allows_configured_origins_only() -> None:
    app = create_app(make_settings(cors_origins=["https://ui.example"]))
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        allowed = await client.options(
            "/api/v1/users/me",
            headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"},
        )
        denied = await client.options(
            "/api/v1/users/me",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in denied.headers
    assert allowed.headers["x-request-id"]


async def test_openapi_documents_error_responses(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    me = schema["paths"]["/api/v1/users/me"]["get"]["responses"]
    assert {"200", "401", "403"} <= set(me)
    assert me["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    signup = schema["paths"]["/api/v1/auth/signup"]["post"]["responses"]
    assert {"201", "409", "422"} <= set(signup)
    login = schema["paths"]["/api/v1/auth/login"]["post"]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    assert (
        schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"][
            "tokenUrl"
        ]
        == "/api/v1/auth/login"
    )


async def test_docs_need_no_cdn(client: AsyncClient) -> None:
    """/docs and /redoc load their JavaScript and CSS from the service itself."""
    for page, assets in [
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ]:
        html = (await client.get(page)).text
        assert "cdn." not in html
        assert "https://" not in html
        for asset in assets:
            url = f"/static-offline-docs/{asset}"
            assert url in html, page
            served = await client.get(url)
            assert served.status_code == 200, url
            assert len(served.content) > 100_000


async def test_operation_ids_are_short_and_unique(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+-[a-z0-9_]+", op_id) for op_id in ids), ids
    assert schema["paths"]["/api/v1/auth/login"]["post"]["operationId"] == "auth-login"


async def test_request_schemas_document_their_limits_and_examples(client: AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    password = schemas["UserCreate"]["properties"]["password"]
    assert password["maxLength"] == 72
    assert "bytes in UTF-8" in password["description"]
    assert "lower-cased" in schemas["UserCreate"]["properties"]["username"]["description"]
    for name in ("UserCreate", "UserUpdate", "UserAdminUpdate", "PasswordChange"):
        assert schemas[name]["examples"], name


async def test_the_signup_example_is_a_valid_signup(client: AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    [example] = schemas["UserCreate"]["examples"]
    response = await client.post("/api/v1/auth/signup", json=example)
    assert response.status_code == 201, response.text
