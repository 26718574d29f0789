"""A client generated from the rendered service's OpenAPI schema has readable names.

openapi-python-client (a generator nobody here wrote) builds a client from the default
variant's /openapi.json; its modules are named after the operation ids, which must be short
(`auth-login` -> `api/auth/auth_login.py`), not FastAPI's default
(`login_api_v1_auth_login_post`).
"""

import json
import secrets

import pytest
from helpers import BIN, PYTHON, check, tool_env

pytestmark = pytest.mark.slow

DUMP_SCHEMA = """
import json
from app.main import create_app
print(json.dumps(create_app().openapi()))
"""


def test_generated_client_has_short_module_names(render_once, tmp_path):
    root = render_once()
    env = tool_env(SECRET_KEY=secrets.token_urlsafe(64), CURRENT_ENVIRONMENT="local")
    schema = json.loads(check([PYTHON, "-c", DUMP_SCHEMA], cwd=root, env=env))
    (tmp_path / "openapi.json").write_text(json.dumps(schema), encoding="utf-8")
    generator = str(BIN / "openapi-python-client")
    cmd = [generator, "generate", "--path", "openapi.json", "--output-path", "client"]
    check([*cmd, "--meta", "none", "--fail-on-warning"], cwd=tmp_path, env=env)
    api = tmp_path / "client" / "api"
    modules = sorted(
        path.relative_to(api).as_posix() for path in api.rglob("*.py") if path.stem != "__init__"
    )
    assert "auth/auth_login.py" in modules, modules
    assert "users/users_read_me.py" in modules, modules
    assert "health/health_ready.py" in modules, modules
    assert not [name for name in modules if "api_v1" in name or len(name) > 40], modules
