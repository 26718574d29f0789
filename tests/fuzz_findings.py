"""Known defects of the rendered service that tests/test_fuzz.py's fuzz runs find.

Each finding says which variants it affects, how to recognise its failures in a fuzz run (so
they do not hide new ones, and are not counted twice), and a fixed reproducer that is sent to
the served variant after the run. `test_known_finding` is an xfail(strict=True) on that
reproducer: the fuzzer's own inputs vary with the schema and the seed, the reproducer does not.
Once the service is fixed the reproducer behaves, the test fails as XPASS, and the finding's
entry goes (its failures then count again).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

# The offset just past PostgreSQL's and SQLite's 64-bit integers.
INT64_OVERFLOW = 2**63


@dataclass(frozen=True)
class Finding:
    key: str
    summary: str
    applies: Callable[[Mapping[str, object]], bool]
    # (failure from the run, the service's error for that request or "") -> it is this finding
    matches: Callable[[Mapping[str, Any], str], bool]
    # (probe of the served variant) -> problems; none once fixed
    reproduce: Callable[["Probe"], list[str]]


@dataclass(frozen=True)
class Probe:
    """The served variant: an authenticated client, its answers and its documented statuses."""

    client: httpx.Client
    variant: Mapping[str, object]
    documented: Mapping[str, set[int]]  # "METHOD /path" -> status codes in its schema

    def expect(self, operation: str, response: httpx.Response, what: str) -> list[str]:
        """No problem when the answer is below 500 and documented for the operation."""
        allowed = self.documented.get(operation, set())
        if response.status_code < 500 and response.status_code in allowed:
            return []
        shown = f"{response.status_code} {response.text[:300]}"
        return [f"{operation}, {what}: {shown} (documented: {sorted(allowed)})"]


def _bad_utf8_json(probe: Probe) -> list[str]:
    headers = {"Content-Type": "application/json"}
    signup = probe.client.post("/api/v1/auth/signup", content=b'{"a": "\xff"}', headers=headers)
    patch = probe.client.patch("/api/v1/users/me", content=b"\xb0", headers=headers)
    return probe.expect("POST /api/v1/auth/signup", signup, "a non-UTF-8 JSON body") + probe.expect(
        "PATCH /api/v1/users/me", patch, "a non-UTF-8 JSON body"
    )


def _bad_multipart(probe: Probe) -> list[str]:
    headers = {"Content-Type": "multipart/form-data; boundary=fuzz"}
    body = b"--fuzz\r\n\xbf--fuzz--\r\n"
    response = probe.client.post("/api/v1/files", content=body, headers=headers)
    return probe.expect("POST /api/v1/files", response, "a malformed multipart body")


def _nul_text(probe: Probe) -> list[str]:
    user = {"username": "nulname", "email": "nul@example.com", "first_name": "A\x00"}
    user |= {"last_name": "B", "password": "long enough password"}
    signup = probe.client.post("/api/v1/auth/signup", json=user)
    patch = probe.client.patch("/api/v1/users/me", json={"last_name": "B\x00"})
    form = {"username": "nul\x00name", "password": "long enough password"}
    login = probe.client.post("/api/v1/auth/login", data=form)
    return (
        probe.expect("POST /api/v1/auth/signup", signup, "NUL in a name")
        + probe.expect("PATCH /api/v1/users/me", patch, "NUL in a name")
        + probe.expect("POST /api/v1/auth/login", login, "NUL in the login name")
    )


def _huge_offset(probe: Probe) -> list[str]:
    paths = ["/api/v1/users"] + (["/api/v1/files"] if probe.variant["use_b2_storage"] else [])
    problems: list[str] = []
    for path in paths:
        response = probe.client.get(path, params={"offset": INT64_OVERFLOW})
        problems += probe.expect(f"GET {path}", response, "offset=2**63")
    return problems


def _status(failure: Mapping[str, Any]) -> int:
    return int(failure["status"])


FINDINGS: tuple[Finding, ...] = (
    Finding(
        key="F1-non-utf8-json-400",
        summary=(
            "A JSON body that is not UTF-8 answers 400 'There was an error parsing the body', "
            "documented nowhere; malformed JSON is a 422 (issue 2)"
        ),
        applies=lambda variant: True,
        matches=lambda failure, error: (
            _status(failure) == 400 and "There was an error parsing the body" in failure["response"]
        ),
        reproduce=_bad_utf8_json,
    ),
    Finding(
        key="F2-malformed-multipart-400",
        summary="POST /files with a malformed multipart body answers an undocumented 400",
        applies=lambda variant: bool(variant["use_b2_storage"]),
        matches=lambda failure, error: (
            failure["operation"] == "POST /api/v1/files" and _status(failure) == 400
        ),
        reproduce=_bad_multipart,
    ),
    Finding(
        key="F3-nul-in-text-500",
        summary=(
            "PostgreSQL: a NUL character (U+0000) in a name (signup, PATCH /users/me and "
            "/users/{id}) or in the login name is sent to the database, which refuses it: 500"
        ),
        applies=lambda variant: variant["database"] == "postgresql",
        matches=lambda failure, error: _status(failure) >= 500 and "0x00" in error,
        reproduce=_nul_text,
    ),
    Finding(
        key="F4-offset-overflow-500",
        summary=(
            "GET /users (and /files) take any `offset`; one past 2**63-1 overflows the database "
            "integer (PostgreSQL: 'value out of int64 range', SQLite: OverflowError): 500"
        ),
        applies=lambda variant: True,
        matches=lambda failure, error: (
            _status(failure) >= 500
            and ("out of int64 range" in error or "too large to convert to SQLite INTEGER" in error)
        ),
        reproduce=_huge_offset,
    ),
)


def applicable(variant: Mapping[str, object]) -> list[Finding]:
    return [finding for finding in FINDINGS if finding.applies(variant)]


def attribute(failure: Mapping[str, Any], error: str, variant: Mapping[str, object]) -> str | None:
    """The key of the known finding this fuzz failure is an instance of, if any."""
    for finding in applicable(variant):
        if finding.matches(failure, error):
            return finding.key
    return None
