"""What the figures were measured on: the machine, the versions, one core's bcrypt rate."""

import contextlib
import os
import platform
import shutil
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

from servers import pg_admin

from bench.config import BCRYPT_COST, ROOT
from bench.storms import redis_client

PACKAGES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "aiosqlite", "pydantic")
PACKAGES += ("bcrypt", "uvloop", "httptools")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def output(*cmd: str) -> str:
    executable = shutil.which(cmd[0]) or cmd[0]
    proc = subprocess.run([executable, *cmd[1:]], capture_output=True, text=True, check=False)  # noqa: S603
    return (proc.stdout or proc.stderr).strip()


def server_versions() -> dict[str, str | None]:
    """PostgreSQL's (the admin connection's server) and Redis's (BENCH_REDIS_URL), None for a
    server that does not answer.
    """
    found: dict[str, str | None] = {"postgresql": None, "redis": None}
    with contextlib.suppress(Exception):
        found["postgresql"] = str(pg_admin("SHOW server_version")).split()[0]
    with contextlib.suppress(Exception):
        client = redis_client()
        try:
            found["redis"] = client.info("server").get("redis_version")
        finally:
            client.close()
    return found


def machine() -> dict:
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(Exception):
            versions[package] = version(package)
    revision = output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    template = "{{cookiecutter.project_slug}}"
    dirty = output("git", "-C", str(ROOT), "status", "--porcelain", "--", template)
    wrk = output("wrk", "-v")
    return {
        "load_average_at_start": os.getloadavg(),
        "template_revision": revision + (" (service template modified)" if dirty else ""),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk.splitlines()[0].strip() if wrk else "?",
        "packages": versions,
        "servers": server_versions(),
    }


def bcrypt_rate(trials: int = 3, seconds: float = 1.5) -> dict[str, object]:
    """hashes/s of bcrypt.checkpw at the default cost in one thread: what one core allows.

    The best of a few trials, so that other work on the machine lowers the reference less.
    """
    import bcrypt

    hashed = bcrypt.hashpw(b"bench-password", bcrypt.gensalt(BCRYPT_COST))
    bcrypt.checkpw(b"bench-password", hashed)
    rates = []
    for _ in range(trials):
        count, started = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - started < seconds:
            bcrypt.checkpw(b"bench-password", hashed)
            count += 1
        rates.append(count / (time.perf_counter() - started))
    best = max(rates)
    return {
        "cost": BCRYPT_COST,
        "trials_per_second": [round(r, 2) for r in rates],
        "per_second": round(best, 2),
        "ms_each": round(1000 / best, 1),
    }
