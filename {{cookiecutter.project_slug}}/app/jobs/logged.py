"""What of a job may be logged: its arguments, with secrets masked."""

import re
from collections.abc import Mapping
from typing import Any

from taskiq import TaskiqMessage

from app.core.config import MASK

# Job arguments whose names say they hold a secret are never logged.
SECRET_ARGUMENT = re.compile(r"(?i)password|secret|token|key|credential")


def redact(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as they may be logged: values of secret-sounding names masked."""
    return {
        name: MASK if SECRET_ARGUMENT.search(name) else value for name, value in arguments.items()
    }


def loggable_arguments(message: TaskiqMessage) -> dict[str, Any]:
    """A job's arguments as they may be logged: positional ones (nameless) always masked."""
    return {**redact(message.kwargs), **{f"#{n}": MASK for n in range(len(message.args))}}
