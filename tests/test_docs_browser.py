"""/docs and /redoc work in a real browser with no way out to the internet.

Headless Chromium (Debian's package `chromium`) loads the default variant's pages while every
host name resolves to nothing, as on an air-gapped network: Swagger UI must list the operations
and ReDoc must render the schema from what the service itself serves. Without Chromium the test
is skipped, unless REQUIRE_CHROMIUM=1 (CI) makes that a failure.
"""

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import PYTHON, tool_env
from servers import free_port, serve

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a headless run needs on a closed network, plus a resolver that finds no host but
# the service's own address: anything from elsewhere (a CDN) fails to load.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
    "--dump-dom",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail("REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return CHROMIUM


def rendered_dom(chromium: str, url: str, profile: Path) -> str:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_docs_render_offline_in_chromium(chromium, render_once, tmp_path):
    root = render_once()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = tool_env(SECRET_KEY=secrets.token_urlsafe(64), CURRENT_ENVIRONMENT="local")
    cmd = [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with serve(cmd, root, env, tmp_path / "server.log", base_url):
        swagger = rendered_dom(chromium, f"{base_url}/docs", tmp_path / "profile-docs")
        redoc = rendered_dom(chromium, f"{base_url}/redoc", tmp_path / "profile-redoc")
    # Swagger UI built its operation list from /openapi.json.
    assert 'class="opblock-summary-path"' in swagger, swagger[:2000]
    assert "/api/v1/auth/login" in swagger
    assert "/api/v1/users/me" in swagger
    assert "Failed to load API definition" not in swagger
    # ReDoc rendered the operations, not its loading screen or an error.
    assert "/api/v1/auth/login" in redoc, redoc[:2000]
    assert "Something went wrong" not in redoc
