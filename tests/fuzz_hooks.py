"""Schemathesis hooks for tests/test_fuzz.py, loaded with SCHEMATHESIS_HOOKS=fuzz_hooks.

The fuzz run authenticates every request as one superuser (FUZZ_PROTECTED_USER_ID). The
fuzzer learns that user's id from `GET /users/me` and feeds it to the admin routes, so left
alone it deletes, deactivates or demotes its own identity within seconds, and every request
after that is a 401/403: the rest of the run would test nothing past authentication. Only those
requests are redirected to a random user id (the operation still runs and answers 404); the
rendered project's own tests cover an admin acting on their own account.
"""

import os
import uuid
from typing import Any

import schemathesis

PROTECTED_USER_ID = os.environ.get("FUZZ_PROTECTED_USER_ID", "")
ADMIN_USER_PATH = "/api/v1/users/{user_id}"
# Fields of PATCH /users/{user_id} that can take the run's own rights away.
RIGHTS_FIELDS = ("is_active", "is_superuser")


def _takes_own_rights(case: Any) -> bool:
    if case.method.upper() == "DELETE":
        return True
    if case.method.upper() == "PATCH":
        body = case.body
        return isinstance(body, dict) and any(field in body for field in RIGHTS_FIELDS)
    return False


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not PROTECTED_USER_ID or case.operation.path != ADMIN_USER_PATH:
        return
    path_parameters = case.path_parameters or {}
    try:
        # Any spelling the API accepts for the same id (upper case, no dashes, braces, ...).
        user_id = str(uuid.UUID(str(path_parameters.get("user_id", ""))))
    except ValueError:
        return
    if user_id != PROTECTED_USER_ID:
        return
    if _takes_own_rights(case):
        case.path_parameters = {**path_parameters, "user_id": str(uuid.uuid4())}
