"""Loguru for everything: the app's logs and stdlib/uvicorn logs, as text or JSON lines.

JSON lines (every environment but local) go out through one `LogStream`, which writes the
lines of a pass of the event loop together. The request log line, one per request, is built
directly: loguru's record for it (caller frame, process, thread, formatting) costs several
times more than the request it describes.
"""

import asyncio
import atexit
import inspect
import json
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from app.core.config import Settings

if TYPE_CHECKING:
    from loguru import Message

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "{extra[request_id]} | <cyan>{name}</cyan> - <level>{message}</level>"
)
REQUEST_LOGGER = "app.middleware.logging"
# A pass of the event loop that logs this many lines writes them out at once, without waiting
# for its end: however much one pass logs, at most this many lines are held.
MAX_PENDING_LINES = 256
# request_id, method, path, status, duration in ms
RequestLog = Callable[[str, str, str, int, float], None]


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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class LogStream:
    """Log lines for a text stream, written once per pass of the event loop.

    Under load, many requests end in one pass of the loop: their lines go out together in one
    write when the pass ends, instead of one write (a system call on a pipe) each; a pass that
    logs more writes every `MAX_PENDING_LINES` lines, so its lines never pile up. Lines logged
    outside the loop (start-up, worker threads, the CLI) and errors are written at once; pending
    lines are written when loguru removes the sink (shutdown, reconfiguration) and at exit, so
    a stopping or failing process loses none.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._write_due = False
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        with self._lock:
            self._pending.append(line)
            if urgent or len(self._pending) >= MAX_PENDING_LINES:
                self._write_pending()
            elif not self._write_due:
                loop = _running_loop()
                if loop is None:
                    self._write_pending()
                else:
                    # One write at the end of this pass, however many lines it logs.
                    loop.call_soon(self._write_due_lines)
                    self._write_due = True

    def flush(self) -> None:
        with self._lock:
            self._write_pending()

    def _write_due_lines(self) -> None:
        with self._lock:
            self._write_due = False
            self._write_pending()

    def close(self) -> None:
        self.flush()
        atexit.unregister(self.flush)

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # the stream is closed or gone: there is nowhere left to report it


class _JsonSink:
    """loguru's sink for JSON lines (an object without `flush`, so loguru does not flush each
    line; `stop` is called when the sink is removed).
    """

    def __init__(self, stream: LogStream) -> None:
        self._stream = stream

    def write(self, message: "Message") -> None:
        record = message.record
        entry: dict[str, Any] = {
            "time": record["time"].astimezone(UTC).isoformat(),
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
        urgent = record["level"].no >= logging.ERROR
        self._stream.write_line(json.dumps(entry, default=str) + "\n", urgent=urgent)

    def stop(self) -> None:
        self._stream.close()


def _json_request_log(stream: LogStream) -> RequestLog:
    # The same fields, in the same order, as a loguru line with these bound in `extra`. The
    # strings a client chooses are encoded by `json`; the rest are numbers, and request ids
    # that are sane by construction (app/middleware/logging.py).
    after_time = f'", "level": "INFO", "logger": "{REQUEST_LOGGER}", "message": '

    def log_request(
        request_id: str, method: str, path: str, status: int, duration_ms: float
    ) -> None:
        stream.write_line(
            '{"time": "'
            + datetime.now(UTC).isoformat()
            + after_time
            + json.dumps(f"{method} {path} {status} {duration_ms}ms")
            + f', "request_id": "{request_id}", "method": {json.dumps(method)}, '
            f'"path": {json.dumps(path)}, "status": {status}, "duration_ms": {duration_ms}}}\n'
        )

    return log_request


def _text_request_log(
    request_id: str, method: str, path: str, status: int, duration_ms: float
) -> None:
    fields = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
    # depth=1: the line names the request middleware, which calls this, as its logger.
    logger.opt(depth=1).bind(**fields).info("{method} {path} {status} {duration_ms}ms", **fields)


def setup_logging(settings: Settings) -> RequestLog | None:
    """Configure every log for these settings; returns what writes the request log line, or
    None when the level leaves it out.
    """
    logger.remove()
    logger.configure(extra={"request_id": "-"})
    # diagnose=False: a traceback must never print the values of local variables (passwords,
    # keys, request bodies).
    request_log: RequestLog
    if settings.json_logs:
        stream = LogStream(sys.stderr)
        logger.add(_JsonSink(stream), level=settings.log_level, format="{message}", diagnose=False)
        request_log = _json_request_log(stream)
    else:
        logger.add(sys.stderr, level=settings.log_level, format=TEXT_FORMAT, diagnose=False)
        request_log = _text_request_log
    logging.basicConfig(handlers=[InterceptHandler()], level=settings.log_level, force=True)
    for name in ("uvicorn", "uvicorn.error", "fastapi", "sqlalchemy"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The request middleware writes one line per request; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    if logger.level(settings.log_level).no > logger.level("INFO").no:
        return None
    return request_log
