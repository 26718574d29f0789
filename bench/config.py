"""The bench's knobs (the environment, listed in bench/__init__.py), its paths and its log."""

import os
import secrets
import sys
import time
from pathlib import Path

from bench.scenarios import GROUPS

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
BUILD = ROOT / "build" / "bench"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
PYTHON = Path(sys.executable)  # the shared venv's interpreter (make bench runs .venv/bin/python)
HOST = "127.0.0.1"  # the only address that is ever served or loaded


def _list(name: str, default: str) -> list[str]:
    return [item for item in os.environ.get(name, default).split(",") if item]


SCENARIOS = _list("BENCH_SCENARIOS", ",".join(GROUPS))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "2")))
SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
SOAK_RSS_INTERVAL = float(os.environ.get("SOAK_RSS_INTERVAL", "5"))
DEFAULT_VARIANTS = "sqlite,postgresql"
VARIANTS = _list("BENCH_VARIANTS", DEFAULT_VARIANTS)
DEFAULT_STACKS = "uvloop==0.22.1,uvloop==0.23.0,asyncio,granian==2.8.9"
STACKS = _list("BENCH_STACKS", DEFAULT_STACKS)
SCALE_WORKERS = int(os.environ.get("BENCH_SCALE_WORKERS", "2"))
SCALE_ROUNDS = max(1, int(os.environ.get("BENCH_SCALE_ROUNDS", "2")))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
OUT = Path(os.environ.get("BENCH_OUT", str(ROOT / "build" / "bench.json")))
RESULTS = os.environ.get("BENCH_RESULTS", "")
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "1"))
PROFILE = _list("BENCH_PROFILE", "")
STRICT = os.environ.get("BENCH_STRICT", "") not in ("", "0")

# A full run, the only one that writes bench/RESULTS.md: every group, every default variant and
# stack, and at least these lengths (the defaults), by knob: (results["config"] key, least).
FULL_LENGTHS = {
    "BENCH_SECONDS": ("seconds", 10),
    "BENCH_WARMUP": ("warmup", 3),
    "BENCH_ROUNDS": ("rounds", 2),
    "SOAK_SECONDS": ("soak_seconds", 60),
    "BENCH_SCALE_ROUNDS": ("scale_rounds", 2),
}

BCRYPT_COST = 12
# The superuser every served project is migrated with, and logs in as.
ADMIN_USER = "benchadmin"
ADMIN_PASSWORD = secrets.token_urlsafe(18)


def knobs() -> dict[str, object]:
    """The knobs as results["config"] records them."""
    return {
        "scenarios": SCENARIOS,
        "seconds": SECONDS,
        "warmup": WARMUP,
        "soak_seconds": SOAK_SECONDS,
        "wrk_threads": WRK_THREADS,
        "variants": VARIANTS,
        "rounds": ROUNDS,
        "stacks": STACKS,
        "scale_workers": SCALE_WORKERS,
        "scale_rounds": SCALE_ROUNDS,
        "profile": PROFILE,
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
