"""The service's test suite (a package, so that `tests.conftest` is imported only once)."""
