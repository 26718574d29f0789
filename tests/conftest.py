from collections.abc import Callable
from pathlib import Path

import pytest
from deploy_files import Variant, deployment_variants
from helpers import TEMPLATE_DIR


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies renders the template named by --template (default "."): pin it to this
    # repository whatever the working directory.
    config.option.template = str(TEMPLATE_DIR)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Start the slow tests (a rendered project's own tools) first so that, spread over the
    # xdist workers, they do not all end up in the tail of the run. The sort is stable, and
    # every worker computes the same order.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def cc_config(_cookiecutter_config_file) -> Path:
    """A cookiecutter user config whose cookiecutters and replay dirs are temporary."""
    return Path(str(_cookiecutter_config_file))


@pytest.fixture(scope="session")
def render_once(cookies_session) -> Callable[..., Path]:
    """Render a variant once per worker (default answers plus overrides); return its root.

    For tests that run tools in the project: it is shared, so it is not pristine afterwards.
    """
    cache: dict[tuple[tuple[str, object], ...], Path] = {}

    def render(**overrides: object) -> Path:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            result = cookies_session.bake(extra_context=overrides)
            assert result.exit_code == 0, f"render {overrides} failed: {result.exception!r}"
            cache[key] = result.project_path
        return cache[key]

    return render


@pytest.fixture(scope="session")
def variants() -> list[Variant]:
    """The deployment files of every combination, rendered once for the test_deploy_*.py
    modules (deploy_files.py)."""
    return deployment_variants()
