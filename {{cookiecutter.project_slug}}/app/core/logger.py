"""Loguru for everything: the app's logs and stdlib/uvicorn logs, as text or JSON lines."""

import inspect
import json
import logging
import sys
import traceback
from typing import TYPE_CHECKING

from loguru import logger

from app.core.config import Settings

if TYPE_CHECKING:
    from loguru import Message

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "{extra[request_id]} | <cyan>{name}</cyan> - <level>{message}</level>"
)


class InterceptHandler(logging.Handler):
    """Route stdlib logging records into loguru, keeping the original caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _json_sink(message: "Message") -> None:
    record = message.record
    entry = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "logger": record["name"],
        "message": record["message"],
        **record["extra"],
    }
    if record["exception"] is not None:
        exc_type, exc_value, exc_traceback = record["exception"]
        entry["exception"] = "".join(
            traceback.format_exception(exc_type, exc_value, exc_traceback)
        ).rstrip()
    sys.stderr.write(json.dumps(entry, default=str) + "\n")


def setup_logging(settings: Settings) -> None:
    logger.remove()
    logger.configure(extra={"request_id": "-"})
    # diagnose=False: a traceback must never print the values of local variables (passwords,
    # keys, request bodies).
    if settings.json_logs:
        logger.add(_json_sink, level=settings.log_level, diagnose=False)
    else:
        logger.add(sys.stderr, level=settings.log_level, format=TEXT_FORMAT, diagnose=False)
    logging.basicConfig(handlers=[InterceptHandler()], level=settings.log_level, force=True)
    for name in ("uvicorn", "uvicorn.error", "fastapi", "sqlalchemy"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The request middleware writes one line per request; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
