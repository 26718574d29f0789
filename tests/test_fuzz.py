"""Fuzz each functional variant's API with schemathesis, for real, over HTTP.

For each functional variant the rendered project is migrated into a fresh database, given a
superuser (its own CLI) and served by uvicorn on a free 127.0.0.1 port with production-like
settings (CURRENT_ENVIRONMENT=staging, a random secret, docs on to publish the schema). The
B2 variants run under tests/fuzz_b2_server.py, which puts b2sdk's in-memory B2 in place of
the real one. `st run` then fuzzes every operation of /openapi.json with the superuser's bearer
token (examples, fuzzing and stateful phases; a fixed seed, so a run is repeatable)
and writes every request, response and check result as NDJSON.

One run per variant serves all the tests of that variant: the first test to need it runs it,
the others (in any xdist worker) read its summary. Each check is a test of its own, and any
failure fails it. What the fuzzer found so far is fixed, with a regression test in the
rendered project's own suite (tests/test_app.py, tests/test_users.py).

The coverage phase is off: it adds some 400-500 fixed boundary cases per variant, over the
budget of a few hundred requests; the rendered projects' own tests cover those boundaries.

Environment: FUZZ_SEED (an integer) explores other inputs; FUZZ_MAX_EXAMPLES scales the run.
"""

import base64
import fcntl
import json
import os
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import BIN, FUNCTIONAL_VARIANTS, OUTPUT_TAIL, PYTHON, run, tool_env, variant_id
from servers import (
    access_token,
    free_port,
    mail_env,
    migrate_with_superuser,
    serve,
    throwaway_database,
)

TESTS_DIR = Path(__file__).resolve().parent
SEED = int(os.environ.get("FUZZ_SEED", "20260501"))
# Per operation and phase: some 380 requests per variant without B2 and 560 with it, 5-15 s.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
MIN_CASES = 200  # fewer means the run was cut short or lost most of the API
RUN_TIMEOUT = 300
ERROR_TAIL = 1500  # characters of a logged traceback kept per failing request
ADMIN = {"email": "fuzz-admin@example.com", "username": "fuzzadmin"}
ADMIN_PASSWORD = "fuzz admin password"

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def _cases():
    """(exercised | check) x variant, the first column outermost.

    xdist hands out the first items round-robin, so this order tends to give each worker whole
    variants (gw0 the 1st and 3rd, gw1 the 2nd and 4th), and little waiting for the other's run.
    """
    for name in ("operations_exercised", *CHECKS):
        for variant in FUNCTIONAL_VARIANTS:
            yield pytest.param(name, variant, id=f"{name}-{variant_id(variant)}")


pytestmark = pytest.mark.slow


# --- Serving a variant ---------------------------------------------------------------------


@contextmanager
def _serve(root: Path, env: dict[str, str], b2: bool, log: Path) -> Iterator[str]:
    """Serve the project with uvicorn on a free port; yield its base URL."""
    port = free_port()
    if b2:
        cmd = [PYTHON, str(TESTS_DIR / "fuzz_b2_server.py"), "127.0.0.1", str(port)]
    else:
        cmd = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--no-access-log"]
    base_url = f"http://127.0.0.1:{port}"
    with serve(cmd, root, env, log, base_url):
        yield base_url


def _login(base_url: str) -> tuple[str, str]:
    """The superuser's access token and id."""
    token = access_token(base_url, ADMIN["username"], ADMIN_PASSWORD)
    me = httpx.get(
        f"{base_url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert me.status_code == 200, me.text
    return token, me.json()["id"]


# --- Running schemathesis --------------------------------------------------------------------


def _schemathesis(base_url: str, token: str, admin_id: str, work: Path) -> Path:
    """`st run` against the served schema; returns its NDJSON report."""
    report = work / "schemathesis.ndjson"
    cmd = [
        str(BIN / "st"),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--continue-on-failure",  # every case of every operation runs, failing or not
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--no-color",
    ]
    env = tool_env(
        SCHEMATHESIS_HOOKS="fuzz_hooks",
        PYTHONPATH=str(TESTS_DIR),
        FUZZ_PROTECTED_USER_ID=admin_id,
    )
    proc = run(cmd, work, env, timeout=RUN_TIMEOUT)
    (work / "schemathesis.txt").write_text(proc.stdout, encoding="utf-8")
    # Exit 1 is "failures found": the tests judge those. Anything else is a broken run.
    if proc.returncode not in (0, 1) or not report.exists():
        raise AssertionError(f"`st run` exited {proc.returncode}:\n{proc.stdout[-OUTPUT_TAIL:]}")
    return report


def _service_errors(log: Path) -> dict[str, str]:
    """request id -> the end of the traceback the service logged for it."""
    errors: dict[str, str] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        exception = record.get("exception") if isinstance(record, dict) else None
        if exception and record.get("request_id"):
            errors[record["request_id"]] = str(exception)[-ERROR_TAIL:]
    return errors


def _summarize(report: Path, schema: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """Per operation: cases and response statuses; per check: its failures, with the request."""
    operations: dict[str, dict[str, Any]] = {}
    for path, methods in schema["paths"].items():
        for method, spec in methods.items():
            operations[f"{method.upper()} {path}"] = {
                "secured": bool(spec.get("security")),
                "cases": 0,
                "statuses": Counter(),
            }
    failures: dict[str, list[dict[str, Any]]] = {name: [] for name in CHECKS}
    seen: set[tuple[str, str, str, str]] = set()
    total = 0
    for line in report.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        interactions = recorder.get("interactions", {})
        for case_id, case in recorder.get("cases", {}).items():
            value = case["value"]
            label = f"{value['method'].upper()} {value['path']}"
            interaction = interactions.get(case_id)
            if interaction is None or interaction.get("response") is None:
                continue  # not sent (filtered, or a network error reported below)
            total += 1
            status = interaction["response"]["status_code"]
            if label in operations:  # not the coverage phase's unsupported methods
                operations[label]["cases"] += 1
                operations[label]["statuses"][str(status)] += 1
            for result in recorder.get("checks", {}).get(case_id, []):
                if result["status"] == "success" or result["name"] not in failures:
                    continue
                info = result.get("failure_info", {}).get("failure", {})
                key = (result["name"], label, info.get("title", ""), info.get("message", ""))
                if key in seen:
                    continue
                seen.add(key)
                response_headers = interaction["response"].get("headers", {})
                request_id = (response_headers.get("x-request-id") or [""])[0]
                failures[result["name"]].append(
                    {
                        "error": errors.get(request_id, ""),
                        "operation": label,
                        "phase": finished["phase"],
                        "title": info.get("title", ""),
                        "message": info.get("message", ""),
                        "request": _describe_request(interaction["request"]),
                        "status": status,
                        "response": _body_text(interaction["response"].get("content")),
                    }
                )
    return {"total": total, "operations": operations, "failures": failures}


def _body_text(content: Any) -> str:
    if isinstance(content, dict) and "$base64" in content:
        raw = base64.b64decode(content["$base64"])
        return raw[:600].decode("utf-8", errors="backslashreplace")
    return str(content)[:600] if content is not None else ""


def _describe_request(request: dict[str, Any]) -> str:
    headers = {
        name: values
        for name, values in request.get("headers", {}).items()
        if name.lower() != "authorization"
    }
    body = _body_text(request.get("body"))
    return f"{request['method']} {request['uri']} headers={headers} body: {body}"


def _run_variant(render_once, variant: dict[str, object], work: Path) -> dict[str, Any]:
    root = render_once(**variant)
    b2 = bool(variant["use_b2_storage"])
    with throwaway_database(str(variant["database"]), work, "tpl_fuzz") as database_url:
        env = tool_env(
            DATABASE_URL=database_url,
            # Production behaviour but for prod's floor on BCRYPT_ROUNDS (cost 4 keeps it fast).
            CURRENT_ENVIRONMENT="staging",
            DOCS_ENABLED="true",
            SECRET_KEY=secrets.token_urlsafe(64),
            BCRYPT_ROUNDS="4",
            LOG_LEVEL="WARNING",
            B2_APPLICATION_KEY_ID="fuzz-key-id",
            B2_APPLICATION_KEY="fuzz-key",
            B2_BUCKET_NAME="fuzz-bucket",
            REDIS_KEY_PREFIX=f"fuzz-{secrets.token_hex(6)}",
            **mail_env(),
        )
        migrate_with_superuser(root, env, **ADMIN, password=ADMIN_PASSWORD)
        log = work / "service.log"
        started = time.monotonic()
        with _serve(root, env, b2, log) as base_url:
            token, admin_id = _login(base_url)
            schema = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
            report = _schemathesis(base_url, token, admin_id, work)
        summary = _summarize(report, schema, _service_errors(log))
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["work"] = str(work)
        return summary


# --- One run per variant, shared by its tests --------------------------------------------------


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory) -> Path:
    """A directory all xdist workers of this session share (this session's own, not older ones)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "fuzz"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def fuzz_run(render_once, fuzz_dir):
    """The summary of the variant's run: run now, or read another test's (or worker's) run."""

    def get(variant: dict[str, object]) -> dict[str, Any]:
        name = variant_id(variant)
        result = fuzz_dir / f"{name}.json"
        with (fuzz_dir / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not result.exists():
                work = fuzz_dir / name
                work.mkdir(exist_ok=True)
                try:
                    summary = _run_variant(render_once, variant, work)
                except (AssertionError, subprocess.SubprocessError, OSError) as exc:
                    summary = {"error": f"{type(exc).__name__}: {exc}"}
                result.write_text(json.dumps(summary), encoding="utf-8")
        summary = json.loads(result.read_text(encoding="utf-8"))
        if "error" in summary:
            pytest.fail(f"the fuzz run of {name} failed:\n{summary['error']}", pytrace=False)
        return summary

    return get


def _operations_table(summary: dict[str, Any]) -> str:
    rows = [
        f"  {label}: {op['cases']} cases, statuses {dict(sorted(op['statuses'].items()))}"
        for label, op in sorted(summary["operations"].items())
    ]
    return "\n".join(rows)


@pytest.mark.parametrize(("name", "variant"), list(_cases()))
def test_fuzz(fuzz_run, name, variant):
    summary = fuzz_run(variant)
    if name == "operations_exercised":
        # Every operation ran, and every secured one got past authentication at least once.
        problems = [
            f"{label}: {op['cases']} cases, statuses {dict(op['statuses'])}"
            for label, op in summary["operations"].items()
            if op["cases"] == 0 or (op["secured"] and not set(op["statuses"]) - {"401", "403"})
        ]
        if summary["total"] < MIN_CASES:
            problems.append(f"only {summary['total']} requests in all (at least {MIN_CASES})")
        assert not problems, (
            "operations not exercised:\n  "
            + "\n  ".join(problems)
            + f"\nall operations:\n{_operations_table(summary)}"
        )
        return
    new = summary["failures"][name]
    if new:
        shown = "\n\n".join(
            f"{f['operation']} ({f['phase']}): {f['title']}\n{f['message']}\n"
            f"request: {f['request']}\nresponse {f['status']}: {f['response']}\n"
            f"service error: {f['error'] or '-'}"
            for f in new[:20]
        )
        pytest.fail(
            f"{len(new)} distinct {name} failures in {summary['total']} requests "
            f"(seed {SEED}; report, service log: {summary['work']}):\n\n{shown}",
            pytrace=False,
        )
