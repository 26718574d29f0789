"""The type check targets the chosen Python version (`[tool.mypy] python_version`).

The functional variants run everything on the default, 3.11; the newer choices get the type
check too, on the variant with every option on, so that no code of an option slips through.
"""

import pytest
from helpers import PYTHON, check, tool_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("python_version", ["3.12", "3.13"])
def test_rendered_mypy_for_newer_pythons(render_once, python_version, tmp_path_factory):
    root = render_once(database="postgresql", use_b2_storage=True, python_version=python_version)
    cache = tmp_path_factory.getbasetemp() / f"mypy-cache-{python_version}"
    check([PYTHON, "-m", "mypy", "app"], cwd=root, env=tool_env(MYPY_CACHE_DIR=str(cache)))
