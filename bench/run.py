"""`make bench`: render, serve and load the template's services next to two references.

Every server runs as the rendered Dockerfile runs the service: its CMD (uvicorn with its flags)
and its ENV, no .env (the image has none), so the settings are at their defaults (prod, one JSON
log line per request) but for what the bench must set: a random SECRET_KEY, a fresh database,
and LOG_LEVEL as .env.example has it. The two references run on the same command and stack: the
ceiling (bench/ceiling_app.py, a bare FastAPI endpoint) and the limit app (bench/limit_app.py,
the least code that does /users/me's job: PyJWT, one SELECT through the driver).

Four groups of scenarios (BENCH_SCENARIOS):

base: renders the default (SQLite) and the PostgreSQL variant into build/bench/, migrates each
(a throwaway PostgreSQL database, dropped at the end) and creates a superuser. For each, three
servers side by side: the service, the same at LOG_LEVEL=WARNING (no request log) and the limit
app, measured in alternating rounds (BENCH_ROUNDS): /health at 64 connections (service and
WARNING), /users/me at 64 (all three) and at 256 (service and limit app). Then on the service
alone: a login storm (correct password), /health during the storm, RSS idle and during the
storm, and a mixed-traffic soak. The soak signs up and refreshes from 127.0.0.1 hundreds of
times a minute, so these servers run with RATE_LIMIT_SIGNUP and RATE_LIMIT_REFRESH raised
(SOAK_RATE_LIMITS below); the login limits keep their defaults (successful logins use up
nothing). Last, both variants' services side by side, /users/me at 64 connections in
alternating rounds: SQLite against PostgreSQL under the same machine load.

stacks: the PostgreSQL variant and the ceiling on each server stack of BENCH_STACKS (uvicorn with
another uvloop, uvicorn --loop asyncio, granian), next to the services' own stack (the rendered
pins), all served side by side and measured in alternating rounds: the ceiling's /health, the
service's /health and /users/me at 64 connections. A uvloop or granian other than the shared
virtualenv's is installed with pip into build/bench/stacks/ and put first on PYTHONPATH.

scale: renders the PostgreSQL variant with use_redis=yes (rate limits shared through Redis at
BENCH_REDIS_URL under a random REDIS_KEY_PREFIX, every limit at its default) and measures
/users/me at 64 connections served by 1 worker, then by N (WEB_CONCURRENCY); on the N-worker
server, /health alone, a 64-connection storm of wrong-password logins against one account (each
request from its own X-Forwarded-For address, so the per-account limit is the one that answers
429), /health during that storm, and correct-password logins of another account from other
addresses during that storm (a few connections, paced below one core's bcrypt rate). uvicorn
trusts X-Forwarded-For from 127.0.0.1 (the Dockerfile's FORWARDED_ALLOW_IPS), which lets wrk on
loopback pose as many clients.

addresses: the same variant and workers as scale, against a storm from many clients at once: 64
connections of wrong-password logins for one account whose budget is spent, every request from
an address of its own (X-Forwarded-For, 10.0.0.0/8 in turn), run long enough for at least
ADDRESS_STORM_ADDRESSES (200,000) distinct addresses, its length set from the 429/s of a warm-up
run. /health at 64 connections alone, then during the storm's last seconds, when it has sent
most of its addresses; and the storm's addresses that have a count in Redis (only those whose
attempt was hashed, once the account's window frees a few: a refused login counts nothing).

Prints one table and the performance targets, and writes the same figures as JSON.

Environment (all optional):
  BENCH_SCENARIOS=base,stacks,scale,addresses   which groups to run, e.g. BENCH_SCENARIOS=stacks
  BENCH_SECONDS=10       each measured wrk run
  BENCH_WARMUP=3         the warm-up before each load's first measured run
  BENCH_ROUNDS=2         alternating rounds of the loads compared in base and stacks (req/s
                         over all rounds, mean p50, worst p99), so that a change in the
                         machine's other load weighs on all alike
  SOAK_SECONDS=60        the mixed-traffic soak
  BENCH_VARIANTS=sqlite,postgresql   the base group's variants
  BENCH_STACKS=uvloop==0.22.1,uvloop==0.23.0,asyncio,granian==2.8.9   the stacks group's stacks
  BENCH_SCALE_WORKERS=2  the worker count compared with one worker in the scale group, and
                         the workers of the addresses group
  BENCH_SCALE_ROUNDS=2   alternating rounds of /users/me on 1 worker and on N
  BENCH_REDIS_URL=redis://127.0.0.1:6379/0   the Redis of the scale group (loopback only)
  BENCH_OUT=build/bench.json
  BENCH_WRK_THREADS=1     threads per wrk process: one drives far more than the server's rate
                         here, and the storm scenarios run two wrk processes at once on 2
                         cores shared with the server, where more threads only take its CPU
  TEMPLATE_PG_ADMIN_DSN=postgresql://postgres@127.0.0.1:5432/postgres   as for the tests
  BENCH_PROFILE=postgresql   variants to profile with py-spy during an extra /users/me run
  BENCH_STRICT=1         exit 1 when a target fails
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
# The template's test helpers are the one way to render, serve, migrate and log in.
sys.path.insert(0, str(ROOT / "tests"))
from helpers import (  # noqa: E402
    PROJECT_TEMPLATE,
    access_token,
    check,
    free_port,
    full_answers,
    migrate_with_superuser,
    pg_admin,
    render_string,
    serve,
    throwaway_database,
)

BUILD = ROOT / "build" / "bench"
PYTHON = Path(sys.executable)  # the shared venv's interpreter (make bench runs .venv/bin/python)
HOST = "127.0.0.1"  # the only address that is ever served or loaded

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
VARIANTS = [v for v in os.environ.get("BENCH_VARIANTS", "sqlite,postgresql").split(",") if v]
# Compared side by side in the base group when both are among the variants.
DATABASES = ("sqlite", "postgresql")
OUT = Path(os.environ.get("BENCH_OUT", str(ROOT / "build" / "bench.json")))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "1"))
PROFILE = [v for v in os.environ.get("BENCH_PROFILE", "").split(",") if v]
STRICT = os.environ.get("BENCH_STRICT", "") not in ("", "0")
SCENARIO_GROUPS = ("base", "stacks", "scale", "addresses")
SCENARIOS = [
    s for s in os.environ.get("BENCH_SCENARIOS", ",".join(SCENARIO_GROUPS)).split(",") if s
]
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "2")))
STACKS = [
    s
    for s in os.environ.get(
        "BENCH_STACKS", "uvloop==0.22.1,uvloop==0.23.0,asyncio,granian==2.8.9"
    ).split(",")
    if s
]
SCALE_WORKERS = int(os.environ.get("BENCH_SCALE_WORKERS", "2"))
SCALE_ROUNDS = max(1, int(os.environ.get("BENCH_SCALE_ROUNDS", "2")))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

STORM_CONNECTIONS = 16
# The base group's servers: the soak signs up and refreshes from 127.0.0.1 far more often than
# the default limits (10 and 30 a minute per address) allow.
SOAK_RATE_LIMITS = {"RATE_LIMIT_SIGNUP": "100000/minute", "RATE_LIMIT_REFRESH": "100000/minute"}
# The scale group: wrong-password logins against one account, each request from its own
# address in 203.0.113.0/24; correct-password logins of another account from 198.51.100.0/24,
# a few connections each pausing between logins, so that they stay below one core's bcrypt rate.
ATTACK_CONNECTIONS = 64
ATTACK_NET = "203.0.113"
LEGIT_NET = "198.51.100"
LEGIT_CONNECTIONS = 3
LEGIT_PAUSE_MS = 1000
LEGIT_P99_LIMIT_MS = 2000
BUDGET_PROBE_ATTEMPTS = 12
# The addresses group: at least this many distinct client addresses in one storm.
ADDRESS_STORM_ADDRESSES = 200_000
BCRYPT_COST = 12
ADMIN_USER = "benchadmin"
ADMIN_PASSWORD = secrets.token_urlsafe(18)
STORM_RSS_INTERVAL = 0.2
SOAK_RSS_INTERVAL = float(os.environ.get("SOAK_RSS_INTERVAL", "5"))

# wrk's done() hook prints the figures as one JSON line (latencies in microseconds).
REPORT_LUA = r"""
report = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
done = report
"""
# Tallies the responses by status in each wrk thread; done() adds the threads' tallies up and
# prints them as a second JSON line. (wrk itself counts every status >= 400 as an error.)
STATUS_LUA = r"""
local threads = {}
local script_setup = setup
setup = function(thread)
  table.insert(threads, thread)
  if script_setup then script_setup(thread) end
end
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  report(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      total[code] = (total[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', code, n)
  end
  io.write("BENCH_STATUS {" .. table.concat(parts, ",") .. "}\n")
end
"""
LOGIN_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "@BODY@"
"""
# A form login whose every request comes from the next address of a /24 (X-Forwarded-For),
# optionally pausing between requests on each connection (wrk's delay() hook, in ms).
LOGIN_FROM_ADDRESSES_LUA = """
wrk.method = "POST"
wrk.body = "@BODY@"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = "@NET@." .. (n % 254 + 1),
  })
end
"""
# A form login whose every request comes from an address of its own: the n-th request of thread
# t (of @THREADS@) from address number n * @THREADS@ + t of @NET8@.0.0.0/8.
LOGIN_FROM_DISTINCT_ADDRESSES_LUA = """
wrk.method = "POST"
wrk.body = "@BODY@"
local threads = 0
setup = function(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end
local n = -1
request = function()
  n = n + 1
  local i = n * @THREADS@ + thread_index
  return wrk.format(nil, nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = string.format(
      "@NET8@.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256),
  })
end
"""
PAUSE_LUA = """
delay = function()
  return @PAUSE_MS@
end
"""


# --- small helpers ----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def loopback_only(url: str) -> None:
    if urllib.parse.urlsplit(url).hostname != HOST:
        raise ValueError(f"refusing to load {url}: the bench targets {HOST} only")


def http(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout=60.0
) -> tuple[int, bytes]:
    loopback_only(url)
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread while in a with block."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        started = time.monotonic()
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((time.monotonic() - started, proc_status(self.pid)["VmRSS"]))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> float | None:
        return max((rss for _, rss in self.samples), default=None)


# --- wrk --------------------------------------------------------------------------------------


def lua_script(name: str, prefix: str = "", *, statuses: bool = False) -> Path:
    """A wrk script: `prefix`, then the JSON report; `statuses` also tallies the responses by
    status (wrk then hands every response to Lua, which costs it some throughput).
    """
    path = BUILD / "lua" / f"{name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prefix + REPORT_LUA + (STATUS_LUA if statuses else ""), encoding="utf-8")
    return path


def wrk_command(
    url: str, conns: int, seconds: int, script: Path, headers: list[str], timeout: str
) -> list[str]:
    loopback_only(url)
    cmd = ["wrk", f"-t{max(1, min(WRK_THREADS, conns))}", f"-c{conns}", f"-d{seconds}s"]
    cmd += ["--latency", "--timeout", timeout, "-s", str(script)]
    for header in headers:
        cmd += ["-H", header]
    return [*cmd, url]


def wrk_result(stdout: str, label: str) -> dict:
    (BUILD / "wrk").mkdir(parents=True, exist_ok=True)
    (BUILD / "wrk" / f"{label}.txt").write_text(stdout, encoding="utf-8")
    match = re.search(r"^BENCH_JSON (\{.*\})$", stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no figures for {label}:\n{stdout}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    result: dict = {
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p90_ms": round(raw["p90_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "errors": errors,
        "errors_detail": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
    }
    tally = re.search(r"^BENCH_STATUS (\{.*\})$", stdout, re.MULTILINE)
    if tally:
        counts = json.loads(tally.group(1))
        result["statuses"] = {code: counts[code] for code in sorted(counts)}
    return result


@dataclass
class Load:
    url: str
    conns: int
    script: Path
    headers: tuple[str, ...] = ()
    timeout: str = "10s"

    def start(self, seconds: int) -> subprocess.Popen[str]:
        cmd = wrk_command(
            self.url, self.conns, seconds, self.script, list(self.headers), self.timeout
        )
        return subprocess.Popen(  # noqa: S603
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def run(self, seconds: int, label: str) -> dict[str, float | int]:
        proc = self.start(seconds)
        return finish(proc, seconds, label)

    def measure(self, label: str, seconds: int = SECONDS) -> dict[str, float | int]:
        """A warm-up (discarded), then the measured run."""
        if WARMUP > 0:
            self.run(WARMUP, f"{label}.warmup")
        result = self.run(seconds, label)
        log(
            f"{label}: {result['rps']} req/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, errors {result['errors']}"
        )
        return result


def finish(proc: subprocess.Popen[str], seconds: int, label: str) -> dict[str, float | int]:
    try:
        stdout, _ = proc.communicate(timeout=seconds + 90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return wrk_result(stdout, label)


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """A server stack: the server, its event loop, and a package laid over the shared
    virtualenv (installed into build/bench/stacks/ and put first on PYTHONPATH).
    """

    name: str
    server: str = "uvicorn"
    loop: str | None = None  # uvicorn's --loop; None: as the Dockerfile serves (auto)
    requirement: str | None = None


def installed(package: str) -> str | None:
    with contextlib.suppress(PackageNotFoundError):
        return version(package)
    return None


# What the services run on: the Dockerfile's command with the shared virtualenv's packages,
# which are the rendered project's pins.
DEFAULT_STACK = Stack(f"uvicorn + uvloop {installed('uvloop')}")


def stack(spec: str) -> Stack:
    """BENCH_STACKS entries: `uvloop==X.Y.Z`, `asyncio`, `granian` or `granian==X.Y.Z`."""
    if spec.startswith("uvloop=="):
        wanted = spec.removeprefix("uvloop==")
        if wanted == installed("uvloop"):
            return DEFAULT_STACK
        return Stack(f"uvicorn + uvloop {wanted}", loop="uvloop", requirement=spec)
    if spec == "asyncio":
        return Stack("uvicorn + asyncio", loop="asyncio")
    if spec.split("==")[0] == "granian":
        return Stack(spec.replace("==", " "), server="granian", requirement=spec)
    raise ValueError(f"BENCH_STACKS: unknown stack {spec!r}")


def overlay(requirement: str) -> Path:
    """A directory holding `requirement` alone (pip --target), installed once."""
    target = BUILD / "stacks" / re.sub(r"[^A-Za-z0-9.]+", "-", requirement)
    if not (target / ".installed").exists():
        shutil.rmtree(target, ignore_errors=True)
        log(f"installing {requirement} into {target.relative_to(ROOT)}")
        check(
            [
                str(PYTHON),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                requirement,
            ],
            ROOT,
            base_env(),
            timeout=300,
        )
        (target / ".installed").touch()
    return target


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The rendered Dockerfile's CMD and its runtime stage's ENV (less the paths, which differ
    here): the services run as the image runs them.
    """
    text = render_string(
        (PROJECT_TEMPLATE / "Dockerfile").read_text(encoding="utf-8"), full_answers()
    ).replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1]
    command = re.search(r"^CMD (\[.*\])$", runtime, re.MULTILINE)
    if not command:
        raise RuntimeError("no CMD [...] in the rendered Dockerfile's runtime stage")
    env = {
        key: value
        for line in re.findall(r"^ENV (.*)$", runtime, re.MULTILINE)
        for key, value in re.findall(r"(\w+)=(\S+)", line)
        if key not in ("PATH", "PYTHONPATH")
    }
    return json.loads(command.group(1)), env


DOCKER_CMD, DOCKER_ENV = dockerfile()


def server_command(stack: Stack, app: str, port: int, workers: int) -> list[str]:
    if stack.server == "granian":
        cmd = [str(PYTHON), "-m", "granian", "--interface", "asgi", "--host", HOST]
        return [*cmd, "--port", str(port), "--workers", str(workers), app]
    if DOCKER_CMD[0] != "uvicorn":
        raise RuntimeError(f"the Dockerfile serves with {DOCKER_CMD[0]}, not uvicorn")
    cmd = [str(PYTHON), "-m", *DOCKER_CMD]
    cmd[cmd.index("app.main:app")] = app
    cmd[cmd.index("--host") + 1] = HOST
    cmd[cmd.index("--port") + 1] = str(port)
    return cmd + (["--loop", stack.loop] if stack.loop else [])


@dataclass
class Server:
    name: str
    port: int
    pid: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


def dotenv(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ}


@contextlib.contextmanager
def serving(
    name: str,
    app: str,
    cwd: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    on: Stack = DEFAULT_STACK,
) -> Iterator[Server]:
    """`app` served as the Dockerfile serves the service, on the stack `on`, with `workers`
    processes (WEB_CONCURRENCY, which uvicorn and the app both read). With more than one,
    `pid` is the supervisor, which hands the listening socket to the workers.
    """
    port = free_port()
    env = DOCKER_ENV | env | {"WEB_CONCURRENCY": str(workers)}
    if on.requirement:
        env["PYTHONPATH"] = str(overlay(on.requirement))
    cmd = server_command(on, app, port, workers)
    with serve(cmd, cwd, env, BUILD / f"{name}.server.log", f"http://{HOST}:{port}") as proc:
        log(f"{name} serving on {HOST}:{port} (pid {proc.pid}, {workers} worker(s), {on.name})")
        yield Server(name, port, proc.pid)


def pg_connections(database: str) -> int:
    return int(pg_admin("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database))


# --- measurements -----------------------------------------------------------------------------


def bcrypt_rate(trials: int = 3, seconds: float = 1.5) -> dict[str, float]:
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


def login(server: Server, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
    """An access token; returns once the server has hashed every password queued before it."""
    return access_token(server.base, username, password)


def bench_ceiling() -> dict:
    health = lua_script("get")
    with serving("ceiling", "ceiling_app:app", BENCH_DIR, base_env()) as server:
        url = f"{server.base}/health"
        return {
            "health_64": Load(url, 64, health).measure("ceiling.health_64"),
            "health_256": Load(url, 256, health).measure("ceiling.health_256"),
            "rss_mb": proc_status(server.pid),
        }


def render(variant: str, *, redis: bool = False) -> Path:
    """The variant rendered into build/bench/, without the .env a render writes: the image has
    none (.dockerignore), so the services see only the Dockerfile's and the bench's variables.
    """
    slug = f"bench-{variant}" + ("-redis" if redis else "")
    project = BUILD / slug
    shutil.rmtree(project, ignore_errors=True)
    cmd = [str(PYTHON.parent / "cookiecutter"), "--no-input", "--output-dir", str(BUILD), str(ROOT)]
    cmd += [f"project_slug={slug}", f"database={variant}", f"use_redis={'yes' if redis else 'no'}"]
    check(cmd, ROOT, base_env(), timeout=120)
    (project / ".env").unlink()
    log(f"rendered {variant}{' + redis' if redis else ''} into {project.relative_to(ROOT)}")
    return project


def env_example(project: Path) -> dict[str, str]:
    return dotenv((project / ".env.example").read_text(encoding="utf-8"))


# Set on every service, on top of the Dockerfile's ENV: a fresh secret, and the log level of
# .env.example. Everything else is at the settings' defaults (the image reads no .env, and
# CURRENT_ENVIRONMENT unset is prod, which logs JSON lines).
SECRET_KEY = secrets.token_urlsafe(64)
LOG_LEVEL = dotenv(
    render_string((PROJECT_TEMPLATE / ".env.example").read_text(encoding="utf-8"), full_answers())
)["LOG_LEVEL"]


def service_env(project: Path) -> dict[str, str]:
    return base_env() | {
        "SECRET_KEY": SECRET_KEY,
        "LOG_LEVEL": LOG_LEVEL,
        # Required outside local; the bench sends no mail.
        "SMTP_HOST": HOST,
        "EMAIL_FROM": "bench@example.com",
        "FRONTEND_URL": f"http://{HOST}",
    }


@contextlib.contextmanager
def prepared(project: Path, variant: str, env: dict[str, str]) -> Iterator[str]:
    """A fresh database for the project (on PostgreSQL a throwaway one, dropped afterwards),
    migrated, with the bench's superuser; its URL is set in `env`, its name yielded.
    """
    with throwaway_database(variant, project, "bench") as url:
        env["DATABASE_URL"] = url
        migrate_with_superuser(
            project, env, username=ADMIN_USER, email="bench@example.com", password=ADMIN_PASSWORD
        )
        yield url.rpartition("/")[2]


def limit_env(env: dict[str, str]) -> dict[str, str]:
    return base_env() | {k: env[k] for k in ("DATABASE_URL", "SECRET_KEY")}


def bench_variant(variant: str) -> dict:
    """The variant at its defaults, next to the same at LOG_LEVEL=WARNING and to the limit app,
    all three on its database; the storm and the soak on the first alone.
    """
    project = render(variant)
    env = service_env(project) | SOAK_RATE_LIMITS
    result: dict = {}
    with (
        prepared(project, variant, env) as database,
        serving(variant, "app.main:app", project, env) as server,
    ):
        result = {"rss_idle_mb": proc_status(server.pid)}
        log(f"{variant}: idle RSS {result['rss_idle_mb']}")
        quiet_env = env | {"LOG_LEVEL": "WARNING"}
        with (
            serving(f"{variant}.warning", "app.main:app", project, quiet_env) as quiet,
            serving(f"{variant}.limit", "limit_app:app", BENCH_DIR, limit_env(env)) as limit,
        ):
            result.update(compare(server, quiet, limit, variant))
        result.update(load_service(server, variant))
        result["health_64_during_storm"]["p99_vs_alone"] = ratio(
            result["health_64_during_storm"]["p99_ms"], result["health_64"]["p99_ms"]
        )
        if variant == "postgresql":
            time.sleep(2)
            config = env_example(project)
            result["pg_connections_after_soak"] = {
                "count": pg_connections(database),
                "pool_size": int(config.get("DB_POOL_SIZE", "10")),
                "max_overflow": int(config.get("DB_MAX_OVERFLOW", "5")),
            }
            log(f"server connections after the soak: {result['pg_connections_after_soak']}")
        if variant in PROFILE:
            result["profile"] = profile_me(server, variant)
    return result


def bench_databases() -> dict:
    """/users/me at 64 connections on the SQLite and the PostgreSQL variant, served side by side
    and measured in alternating rounds: the embedded default against the server database under
    the same machine load (the variants' own groups run minutes apart).
    """
    loads: dict[str, tuple[Load, str]] = {}
    with contextlib.ExitStack() as stack:
        for variant in DATABASES:
            project = render(variant)
            env = service_env(project)
            stack.enter_context(prepared(project, variant, env))
            server = stack.enter_context(
                serving(f"{variant}.side_by_side", "app.main:app", project, env)
            )
            bearer = (f"Authorization: Bearer {login(server)}",)
            loads[variant] = (
                Load(f"{server.base}/api/v1/users/me", 64, lua_script("get"), bearer),
                f"{variant}.side_by_side.me_64",
            )
        return interleaved(loads)


def interleaved(loads: dict[str, tuple[Load, str]], rounds: int = ROUNDS) -> dict[str, dict]:
    """Each load measured in turn, `rounds` times (a warm-up before each one's first round), so
    that a change in the machine's other load weighs on all alike; the rounds combined.
    """
    runs: dict[str, list[dict]] = {key: [] for key in loads}
    for i in range(rounds):
        for key, (load, label) in loads.items():
            run_label = f"{label}.round{i + 1}"
            runs[key].append(load.measure(run_label) if i == 0 else load.run(SECONDS, run_label))
    return {key: combine(found) for key, found in runs.items()}


def compare(server: Server, quiet: Server, limit: Server, variant: str) -> dict:
    """The request log's cost (/health and /users/me at the defaults and at WARNING) and
    /users/me against the limit app, in alternating rounds.
    """
    get = lua_script("get")
    health = Load(f"{server.base}/health", 64, get)
    bearer = (f"Authorization: Bearer {login(server)}",)
    me = "/api/v1/users/me"
    out: dict = {}
    out.update(
        interleaved(
            {
                "health_64": (health, f"{variant}.health_64"),
                "health_64_warning": (
                    Load(f"{quiet.base}/health", 64, get),
                    f"{variant}.warning.health_64",
                ),
            }
        )
    )
    out.update(
        interleaved(
            {
                "me_64": (Load(f"{server.base}{me}", 64, get, bearer), f"{variant}.me_64"),
                "me_64_limit": (
                    Load(f"{limit.base}{me}", 64, get, bearer),
                    f"{variant}.limit.me_64",
                ),
                "me_64_warning": (
                    Load(f"{quiet.base}{me}", 64, get, bearer),
                    f"{variant}.warning.me_64",
                ),
            }
        )
    )
    out.update(
        interleaved(
            {
                "me_256": (Load(f"{server.base}{me}", 256, get, bearer), f"{variant}.me_256"),
                "me_256_limit": (
                    Load(f"{limit.base}{me}", 256, get, bearer),
                    f"{variant}.limit.me_256",
                ),
            },
            rounds=1,
        )
    )
    return out


def load_service(server: Server, variant: str) -> dict:
    """The login storm, /health during it, RSS, and the soak, on the service alone."""
    get, login_script = lua_script("get"), storm_script()
    health = Load(f"{server.base}/health", 64, get)
    storm = Load(f"{server.base}/api/v1/auth/login", STORM_CONNECTIONS, login_script, (), "60s")
    out: dict = {}
    # (3) the login storm alone; the warm-up uses 2 connections, then the queue is drained.
    Load(storm.url, 2, login_script, (), "60s").run(max(WARMUP, 2), f"{variant}.login.warmup")
    login(server)
    with RssSampler(server.pid, STORM_RSS_INTERVAL) as sampler:
        out["login_16"] = storm.run(SECONDS, f"{variant}.login_16")
        login(server)  # returns once every queued hash is done
    out["login_16"]["rss_peak_mb"] = sampler.peak
    log(f"{variant}.login_16: {out['login_16']}")

    # (4) /health at 64 connections while the storm runs (two wrk processes at once).
    lead = 2
    storm_seconds = lead + WARMUP + SECONDS + lead
    with RssSampler(server.pid, STORM_RSS_INTERVAL) as sampler2:
        storm_proc = storm.start(storm_seconds)
        try:
            time.sleep(lead)
            if WARMUP > 0:
                health.run(WARMUP, f"{variant}.health_during_storm.warmup")
            out["health_64_during_storm"] = health.run(SECONDS, f"{variant}.health_during_storm")
        finally:
            out["login_16_with_health"] = finish(storm_proc, storm_seconds, f"{variant}.storm2")
        login(server)
    log(f"{variant}.health_during_storm: {out['health_64_during_storm']}")
    out["rss_storm"] = {
        "peak_sampled_mb": max(filter(None, [sampler.peak, sampler2.peak]), default=None),
        "after": proc_status(server.pid),
    }
    log(f"{variant}: storm RSS {out['rss_storm']}")
    out["soak"] = soak(server, variant)
    out["rss_end"] = proc_status(server.pid)
    return out


def storm_script() -> Path:
    body = urllib.parse.urlencode({"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    return lua_script("login", LOGIN_LUA.replace("@BODY@", body), statuses=True)


def soak(server: Server, variant: str) -> dict:
    log(f"{variant}: soak for {SOAK_SECONDS}s")
    cmd = [str(PYTHON), str(BENCH_DIR / "soak.py"), server.base, str(SOAK_SECONDS)]
    cmd += [ADMIN_USER, ADMIN_PASSWORD]
    with RssSampler(server.pid, SOAK_RSS_INTERVAL) as sampler:
        proc = subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, timeout=SOAK_SECONDS + 120, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"soak client failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rss"] = rss_trend(sampler.samples)
    log(
        f"{variant}.soak: {result['requests']} requests, 5xx {result['status_5xx']}, "
        f"transport errors {result['transport_errors']}, RSS {result['rss']}"
    )
    return result


def rss_trend(samples: list[tuple[float, float]]) -> dict:
    if len(samples) < 2:
        return {"samples": len(samples)}
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    half = len(values) // 2
    slope = statistics.linear_regression(times, values).slope * 60
    return {
        "samples": len(values),
        "first_mb": values[0],
        "last_mb": values[-1],
        "max_mb": max(values),
        "slope_mb_per_min": round(slope, 2),
        # Growth of the peak from the first half to the second: ~0 when RSS has levelled off.
        "second_half_growth_mb": round(max(values[half:]) - max(values[:half]), 1),
        "series_mb": values,
    }


# --- server stacks ----------------------------------------------------------------------------


def bench_stacks() -> dict:
    """The PostgreSQL variant and the ceiling on each stack of BENCH_STACKS (the services' own
    stack first), all served side by side (idle ones cost nothing) and measured in alternating
    rounds: the ceiling's /health, the service's /health and /users/me at 64 connections.
    """
    stacks = [DEFAULT_STACK]
    stacks += [found for found in map(stack, STACKS) if found not in stacks]
    project = render("postgresql")
    env = service_env(project)
    get = lua_script("get")
    loads: dict[str, tuple[Load, str]] = {}
    with prepared(project, "postgresql", env), contextlib.ExitStack() as servers:
        for on in stacks:
            tag = "stacks." + re.sub(r"[^a-z0-9.]+", "-", on.name)
            app = servers.enter_context(serving(tag, "app.main:app", project, env, on=on))
            ceiling = servers.enter_context(
                serving(f"{tag}.ceiling", "ceiling_app:app", BENCH_DIR, base_env(), on=on)
            )
            bearer = (f"Authorization: Bearer {login(app)}",)
            loads[f"{on.name}|ceiling_health_64"] = (
                Load(f"{ceiling.base}/health", 64, get),
                f"{tag}.ceiling.health_64",
            )
            loads[f"{on.name}|health_64"] = (
                Load(f"{app.base}/health", 64, get),
                f"{tag}.health_64",
            )
            loads[f"{on.name}|me_64"] = (
                Load(f"{app.base}/api/v1/users/me", 64, get, bearer),
                f"{tag}.me_64",
            )
        measured = interleaved(loads)
    out: dict = {"default": DEFAULT_STACK.name, "stacks": {}}
    for key, figures in measured.items():
        name, _, what = key.partition("|")
        out["stacks"].setdefault(name, {})[what] = figures
    return out


# --- scale-out: workers, shared rate limits ------------------------------------------------


def redis_client():
    import redis

    if urllib.parse.urlsplit(REDIS_URL).hostname != HOST:
        raise ValueError(f"refusing Redis at {REDIS_URL}: the bench uses {HOST} only")
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def redis_keys(prefix: str, *, under: str = "", delete: bool = False, cap: int = 100_000) -> int:
    """How many keys start with `prefix:under` (at most `cap` are looked at); deletes them on
    request.
    """
    client = redis_client()
    try:
        keys = []
        for key in client.scan_iter(match=f"{prefix}:{under}*", count=1000):
            keys.append(key)
            if len(keys) >= cap:
                break
        if delete:
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


def signup(server: Server, username: str, password: str, address: str) -> None:
    body = json.dumps(
        {
            "username": username,
            "email": f"{username}@example.com",
            "first_name": "Bench",
            "last_name": "User",
            "password": password,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    status, payload = http(f"{server.base}/api/v1/auth/signup", data=body, headers=headers)
    if status != 201:
        raise RuntimeError(f"signup on {server.name} answered {status}: {payload[:300]!r}")


def logins_from_addresses(
    name: str, username: str, password: str, net: str, pause_ms: int = 0
) -> Path:
    body = urllib.parse.urlencode({"username": username, "password": password})
    prefix = LOGIN_FROM_ADDRESSES_LUA.replace("@BODY@", body).replace("@NET@", net)
    if pause_ms:
        prefix += PAUSE_LUA.replace("@PAUSE_MS@", str(pause_ms))
    return lua_script(name, prefix, statuses=True)


def status_count(result: dict, *codes: int) -> int:
    return sum(n for code, n in result.get("statuses", {}).items() if int(code) in codes)


def other_statuses(result: dict, *expected: int) -> int:
    """Answers with a status other than `expected`, plus wrk's transport errors."""
    detail = result["errors_detail"]
    transport = sum(detail[k] for k in ("connect", "read", "write", "timeout"))
    unexpected = sum(
        n for code, n in result.get("statuses", {}).items() if int(code) not in expected
    )
    return transport + unexpected


def redis_version(group: str) -> str | None:
    client = redis_client()
    try:
        client.ping()
        return client.info("server").get("redis_version")
    except Exception as exc:
        raise RuntimeError(f"the {group} scenarios need Redis at {REDIS_URL}: {exc}") from exc
    finally:
        client.close()


def redis_project(group: str) -> tuple[Path, dict[str, str], dict]:
    """The PostgreSQL + Redis variant rendered, the environment of its servers (the limits under
    a key prefix of their own) and the figures every such group reports.
    """
    version_found = redis_version(group)
    project = render("postgresql", redis=True)
    prefix = f"bench-{secrets.token_hex(6)}"
    env = service_env(project) | {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix}
    config = env_example(project)
    out: dict = {
        "variant": "postgresql+redis",
        "workers": SCALE_WORKERS,
        "redis": {"url": REDIS_URL, "version": version_found, "key_prefix": prefix},
        "rate_limits": {k: v for k, v in config.items() if k.startswith("RATE_LIMIT_")},
    }
    return project, env, out


def bench_scale() -> dict:
    """/users/me with 1 and SCALE_WORKERS workers; a wrong-password storm against one account
    with the limits shared in Redis, /health and legitimate logins during it.
    """
    project, env, out = redis_project("scale")
    label, prefix = out["variant"], out["redis"]["key_prefix"]
    config = env_example(project)
    out |= {
        "pool": {
            "size": int(config.get("DB_POOL_SIZE", "10")),
            "max_overflow": int(config.get("DB_MAX_OVERFLOW", "5")),
        },
    }
    get = lua_script("get")
    me_path = "/api/v1/users/me"
    try:
        with prepared(project, "postgresql", env) as database:
            # (1) /users/me at 64 connections, one worker and SCALE_WORKERS workers served side
            # by side (the idle one costs nothing) and measured in turn, SCALE_ROUNDS times.
            name = f"{label}.w{SCALE_WORKERS}"
            with serving(name, "app.main:app", project, env, workers=SCALE_WORKERS) as server:
                with serving(f"{label}.w1", "app.main:app", project, env) as single:
                    loads = {}
                    for key, target, tag in (("w1", single, f"{label}.w1"), ("wn", server, name)):
                        bearer = (f"Authorization: Bearer {login(target)}",)
                        loads[f"me_64_{key}"] = (
                            Load(f"{target.base}{me_path}", 64, get, bearer),
                            f"{tag}.me_64",
                        )
                    out.update(interleaved(loads, SCALE_ROUNDS))
                out["pg_connections_after_me"] = pg_connections(database)
                log(f"{name}: server connections after /users/me {out['pg_connections_after_me']}")
                out.update(attack(server, name))
            out["pg_connections_end"] = pg_connections(database)
    finally:
        with contextlib.suppress(Exception):
            out["redis_keys_written"] = redis_keys(prefix, delete=True)
            log(f"deleted {out['redis_keys_written']} Redis keys under {prefix}:")
    out["me_64_wn"]["vs_w1"] = ratio(out["me_64_wn"]["rps"], out["me_64_w1"]["rps"])
    return out


def combine(runs: list[dict]) -> dict:
    """Rounds of one measurement: req/s over all of them, mean p50, worst p99."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    combined = {
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(statistics.mean(r["p50_ms"] for r in runs), 1),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "max_ms": max(r["max_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rounds": runs,
    }
    log(
        f"rounds combined: {combined['rps']} req/s, p50 {combined['p50_ms']} ms, "
        f"p99 {combined['p99_ms']} ms (req/s per round: {[r['rps'] for r in runs]})"
    )
    return combined


def attack(server: Server, name: str) -> dict:
    """(2) and (3) on one served project: the 429 storm, /health and logins during it."""
    victim, victim_password = "benchvictim", secrets.token_urlsafe(18)
    user, user_password = "benchuser", secrets.token_urlsafe(18)
    signup(server, victim, victim_password, f"{LEGIT_NET}.250")
    signup(server, user, user_password, f"{LEGIT_NET}.251")
    wrong = "wrong-" + secrets.token_urlsafe(12)
    storm = Load(
        f"{server.base}/api/v1/auth/login",
        ATTACK_CONNECTIONS,
        logins_from_addresses("attack", victim, wrong, ATTACK_NET),
        (),
        "30s",
    )
    legit = Load(
        f"{server.base}/api/v1/auth/login",
        LEGIT_CONNECTIONS,
        logins_from_addresses("legit", user, user_password, LEGIT_NET, LEGIT_PAUSE_MS),
        (),
        "30s",
    )
    health = Load(f"{server.base}/health", 64, lua_script("get"))
    out: dict = {}
    out["health_64"] = health.measure(f"{name}.health_64")
    # The account's budget, spent one attempt at a time over new connections (which the
    # workers take in turn): with the counts shared, exactly the limit is hashed (401), then
    # 429; with a count per worker, up to the limit per worker would be.
    started = time.monotonic()
    out["budget_probe"] = budget_probe(server, victim, wrong)
    log(f"{name}: {BUDGET_PROBE_ATTEMPTS} sequential wrong passwords: {out['budget_probe']}")
    runs = ["attack_64", "attack_with_health", "attack_with_legit"]
    if WARMUP > 0:
        out["attack_warmup"] = storm.run(WARMUP, f"{name}.attack_64.warmup")
        attack_stats(out["attack_warmup"])
        runs.append("attack_warmup")
    out["attack_64"] = storm.run(SECONDS, f"{name}.attack_64")
    attack_stats(out["attack_64"])
    log(
        f"{name}.attack_64: {out['attack_64']['rps_429']} 429/s, p50 "
        f"{out['attack_64']['p50_ms']} ms, p99 {out['attack_64']['p99_ms']} ms, "
        f"statuses {out['attack_64']['statuses']}"
    )

    # /health at 64 connections while the storm runs (two wrk processes at once).
    out["health_64_during_attack"], out["attack_with_health"] = measured_during(
        storm, health, f"{name}.health_during_attack", f"{name}.attack2"
    )
    attack_stats(out["attack_with_health"])
    out["health_64_during_attack"]["p99_vs_alone"] = ratio(
        out["health_64_during_attack"]["p99_ms"], out["health_64"]["p99_ms"]
    )
    log(f"{name}.health_during_attack: {out['health_64_during_attack']}")

    # Legitimate logins from other addresses while the storm runs.
    lead = STORM_LEAD_SECONDS
    legit_seconds = max(2 * SECONDS, 6)
    storm_seconds = lead + legit_seconds + lead
    storm_proc = storm.start(storm_seconds)
    try:
        time.sleep(lead)
        out["legit_during_attack"] = legit.run(legit_seconds, f"{name}.legit_during_attack")
    finally:
        out["attack_with_legit"] = finish(storm_proc, storm_seconds, f"{name}.attack3")
    attack_stats(out["attack_with_legit"])
    lg = out["legit_during_attack"]
    lg["ok"] = status_count(lg, 200)
    lg["failed"] = other_statuses(lg, 200)
    log(f"{name}.legit_during_attack: {lg}")
    # With the counts shared, the account's budget holds for every worker together: at most
    # the limit per window, plus one attempt per further worker that passed the check while
    # another worker's hash was running.
    out["attack_hashed"] = {
        "wrong_password_401": sum(status_count(out[k], 401) for k in runs),
        "storm_seconds": round(time.monotonic() - started, 1),
    }
    log(f"{name}: wrong passwords hashed during the storms {out['attack_hashed']}")
    return out


STORM_LEAD_SECONDS = 2  # a storm runs alone this long before and after what is measured in it


def measured_during(
    storm: Load, load: Load, label: str, storm_label: str, storm_seconds: int = 0
) -> tuple[dict, dict]:
    """`load` (its warm-up, then the measured run) in the last seconds of a storm of at least
    `storm_seconds`, two wrk processes at once; returns the figures of both.
    """
    lead = STORM_LEAD_SECONDS
    measured = WARMUP + SECONDS
    storm_seconds = max(storm_seconds, lead + measured + lead)
    storm_proc = storm.start(storm_seconds)
    try:
        time.sleep(storm_seconds - measured - lead)
        if WARMUP > 0:
            load.run(WARMUP, f"{label}.warmup")
        result = load.run(SECONDS, label)
    finally:
        storm_result = finish(storm_proc, storm_seconds, storm_label)
    return result, storm_result


def bench_addresses() -> dict:
    """A storm of wrong-password logins for one spent account, every request from an address
    of its own (at least ADDRESS_STORM_ADDRESSES of them), on SCALE_WORKERS workers with the
    limits in Redis: /health alone and in the storm's last seconds, and the Redis keys it adds.
    """
    project, env, out = redis_project("addresses")
    name, prefix = f"{out['variant']}.w{SCALE_WORKERS}.addresses", out["redis"]["key_prefix"]
    victim, victim_password = "benchvictim", secrets.token_urlsafe(18)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    try:
        with (
            prepared(project, "postgresql", env),
            serving(name, "app.main:app", project, env, workers=SCALE_WORKERS) as server,
        ):
            signup(server, victim, victim_password, f"{LEGIT_NET}.250")
            health = Load(f"{server.base}/health", 64, lua_script("get"))
            out["health_64"] = health.measure(f"{name}.health_64")
            out["budget_probe"] = budget_probe(server, victim, wrong)
            log(f"{name}: the account's budget spent: {out['budget_probe']}")

            def storm(net8: int) -> Load:
                script = distinct_addresses_script(f"storm-{net8}", victim, wrong, net8)
                url = f"{server.base}/api/v1/auth/login"
                return Load(url, ATTACK_CONNECTIONS, script, (), "30s")

            # A warm-up from other addresses (11.0.0.0/8) gives the rate that sets the length.
            warmup = storm(11).run(max(WARMUP, 2), f"{name}.storm.warmup")
            rate = max(status_count(warmup, 429) / warmup["seconds"], 1.0)
            # Long enough at that rate even if the storm got nothing while /health is loaded
            # beside it, with a margin for a machine that slows down.
            storm_seconds = math.ceil(1.2 * (ADDRESS_STORM_ADDRESSES / rate + WARMUP + SECONDS))
            log(f"{name}: {rate:.0f} 429/s in the warm-up: a storm of {storm_seconds} s")
            out["health_64_during_storm"], out["storm"] = measured_during(
                storm(10), health, f"{name}.health_during_storm", f"{name}.storm", storm_seconds
            )
            out["storm_seconds"] = storm_seconds
            # A count per storm address: only those whose attempt was hashed have one.
            out["storm_addresses_counted"] = redis_keys(
                prefix, under="limits:LIMITER/login_address/10."
            )
    finally:
        with contextlib.suppress(Exception):
            out["redis_keys_written"] = redis_keys(prefix, delete=True)
            log(f"deleted {out['redis_keys_written']} Redis keys under {prefix}:")
    attack_stats(out["storm"])
    # One address per request: as many distinct addresses as requests sent (wrk counts those
    # answered, and a connection's request in flight at the end is not).
    out["distinct_addresses"] = out["storm"]["requests"]
    during = out["health_64_during_storm"]
    during["p99_vs_alone"] = ratio(during["p99_ms"], out["health_64"]["p99_ms"])
    log(
        f"{name}: {out['distinct_addresses']} addresses, {out['storm']['rps_429']} 429/s, "
        f"/health p99 {during['p99_ms']} ms during vs {out['health_64']['p99_ms']} ms alone, "
        f"storm addresses with a count in Redis {out['storm_addresses_counted']}"
    )
    return out


def distinct_addresses_script(name: str, username: str, password: str, net8: int) -> Path:
    body = urllib.parse.urlencode({"username": username, "password": password})
    threads = max(1, min(WRK_THREADS, ATTACK_CONNECTIONS))
    prefix = LOGIN_FROM_DISTINCT_ADDRESSES_LUA.replace("@BODY@", body)
    prefix = prefix.replace("@THREADS@", str(threads)).replace("@NET8@", str(net8))
    return lua_script(name, prefix, statuses=True)


def budget_probe(server: Server, username: str, password: str) -> dict[str, int]:
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    statuses: Counter[int] = Counter()
    for i in range(BUDGET_PROBE_ATTEMPTS):
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": f"{ATTACK_NET}.{i + 1}",
            "Connection": "close",
        }
        status, _ = http(f"{server.base}/api/v1/auth/login", data=body, headers=headers)
        statuses[status] += 1
    return {str(code): n for code, n in sorted(statuses.items())}


def attack_stats(result: dict) -> None:
    """429s per second, and the answers that are neither 429 nor 401 (the wrong password)."""
    result["rps_429"] = round(status_count(result, 429) / result["seconds"], 1)
    result["unexpected"] = other_statuses(result, 401, 429)


def profile_me(server: Server, variant: str) -> dict:
    py_spy = shutil.which("py-spy", path=str(PYTHON.parent)) or shutil.which("py-spy")
    if not py_spy:
        log("py-spy not found (pip install py-spy into .venv); no profile")
        return {"error": "py-spy not installed"}
    token = login(server)
    raw = BUILD / f"profile-{variant}-me.txt"
    bearer = (f"Authorization: Bearer {token}",)
    load = Load(f"{server.base}/api/v1/users/me", 64, lua_script("get"), bearer)
    wrk_proc = load.start(SECONDS + 3)
    try:
        time.sleep(1.5)
        spy = [py_spy, "record", "--pid", str(server.pid), "--duration", str(SECONDS)]
        spy += ["--rate", "250", "--format", "raw", "--output", str(raw)]
        subprocess.run(spy, capture_output=True, text=True, timeout=SECONDS + 60, check=True)  # noqa: S603
    finally:
        under_profile = finish(wrk_proc, SECONDS + 3, f"{variant}.me_64.profiled")
    summary = summarise_profile(raw)
    summary["load_under_profile"] = under_profile
    summary["raw"] = str(raw.relative_to(ROOT))
    log(f"profile of {variant} /users/me written to {raw}")
    return summary


def summarise_profile(raw: Path, top: int = 25) -> dict:
    """Where the samples of py-spy's collapsed stacks go.

    Stacks rooted in the uvicorn main module are the event loop; SQLAlchemy's async layer runs
    its sync code in greenlets, which py-spy shows as separate roots (counted as "greenlet");
    stacks rooted in threading are worker threads. `inclusive_pct` leaves out the trunk frames
    present in (almost) every event-loop stack, so what remains are the subtrees worth reading.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    roots: Counter[str] = Counter()
    total = idle_threads = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        if frames[0].startswith("Thread._bootstrap") and frames[-1].startswith(
            (
                "Condition.wait",
                "Queue.get",
                "_worker (concurrent",
                "_connection_worker_thread (aiosqlite",
            )
        ):
            # Idle workers (thread pools, aiosqlite's connection threads) waiting on a queue,
            # which py-spy reports as active.
            idle_threads += count
            continue
        total += count
        root = frames[0]
        if "runpy" in root:
            roots["event loop (main thread)"] += count
        elif root.startswith("Thread._bootstrap"):
            roots["worker threads"] += count
        else:
            roots["greenlet (SQLAlchemy sync layer)"] += count
        own[frames[-1]] += count
        packages[frame_package(stack.split(";")[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    trunk = 0.6 * roots["event loop (main thread)"]
    return {
        "samples": total,
        "idle_worker_thread_samples_left_out": idle_threads,
        "roots_pct": [(name, pct(n)) for name, n in roots.most_common()],
        "self_pct": [(name, pct(n)) for name, n in own.most_common(top)],
        "inclusive_pct": [(name, pct(n)) for name, n in inclusive.most_common() if n < trunk][:top],
        "self_by_package_pct": [(name, pct(n)) for name, n in packages.most_common(top)],
    }


def frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/file.py:123)"; drop the line number.
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    return f"{match.group(1)} ({match.group(2)})" if match else frame


def frame_package(frame: str) -> str:
    match = re.match(r"^.* \((.*?)(?::\d+)?\)$", frame)
    path = match.group(1) if match else frame
    if path.startswith("<"):
        return path
    head = path.split("/", 1)[0]
    return head if "/" in path else head.removesuffix(".py")


# --- report -----------------------------------------------------------------------------------


def ratio(value, reference) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    for row in rows:
        cells = [
            str(c).rjust(w) if i >= 2 else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


TABLE_HEADER = [
    "scenario",
    "variant",
    "workers",
    "redis",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "ratio",
]


def base_variants(results: dict) -> list[str]:
    return [v for v in VARIANTS if v in results]


def row(label: str, variant: str, workers, redis: str, figures: dict, note: str, **kw) -> list:
    return [
        label,
        variant,
        str(workers),
        redis,
        fmt(kw.get("rps", figures["rps"]), ".1f"),
        fmt(figures["p50_ms"], ".1f"),
        fmt(figures["p99_ms"], ".1f"),
        str(kw.get("errors", figures["errors"])),
        note,
    ]


def scenario_rows(results: dict) -> list[list[str]]:
    rows = []
    if "ceiling" in results:
        rows += base_rows(results)
    if "stacks" in results:
        rows += stack_rows(results["stacks"])
    if "scale" in results:
        rows += scale_rows(results["scale"])
    if "addresses" in results:
        rows += address_rows(results["addresses"])
    return rows


def base_rows(results: dict) -> list[list[str]]:
    ceiling = results["ceiling"]
    bcrypt_ps = results["bcrypt"]["per_second"]
    rows = [
        row("GET /health c64", "ceiling", 1, "-", ceiling["health_64"], ""),
        row("GET /health c256", "ceiling", 1, "-", ceiling["health_256"], ""),
    ]

    def x(value, reference) -> str:
        found = ratio(value, reference)
        return "-" if found is None else f"{found:.2f} x"

    for variant in base_variants(results):
        r = results[variant]
        limit, quiet = f"{variant} limit app", f"{variant} LOG_LEVEL=WARNING"
        h64, hq = r["health_64"], r["health_64_warning"]
        me, me_limit, me_quiet = r["me_64"], r["me_64_limit"], r["me_64_warning"]
        specs = [
            (
                "GET /health c64",
                variant,
                h64,
                f"{x(h64['rps'], hq['rps'])} WARNING; {x(h64['rps'], ceiling['health_64']['rps'])}"
                " ceiling",
            ),
            ("GET /health c64", quiet, hq, f"{x(hq['rps'], ceiling['health_64']['rps'])} ceiling"),
            (
                "GET /users/me c64",
                variant,
                me,
                f"{x(me['rps'], me_limit['rps'])} limit app, "
                f"p99 {x(me['p99_ms'], me_limit['p99_ms'])}"
                f"; {x(me['rps'], ceiling['health_64']['rps'])} ceiling",
            ),
            ("GET /users/me c64", limit, me_limit, ""),
            (
                "GET /users/me c64",
                quiet,
                me_quiet,
                f"{x(me_quiet['rps'], me_limit['rps'])} limit app",
            ),
            (
                "GET /users/me c256",
                variant,
                r["me_256"],
                f"{x(r['me_256']['rps'], me['rps'])} its c64; "
                f"{x(r['me_256']['rps'], r['me_256_limit']['rps'])} limit app",
            ),
            ("GET /users/me c256", limit, r["me_256_limit"], ""),
            (
                "POST /auth/login c16",
                variant,
                r["login_16"],
                f"{x(r['login_16']['rps'], bcrypt_ps)} 1-core bcrypt; "
                + statuses_text(r["login_16"]),
            ),
            (
                "GET /health c64 during storm",
                variant,
                r["health_64_during_storm"],
                f"p99 {x(r['health_64_during_storm']['p99_ms'], h64['p99_ms'])} alone",
            ),
        ]
        rows += [row(label, who, 1, "no", figures, note) for label, who, figures, note in specs]
    if "databases" in results:
        side_by_side = results["databases"]
        for variant in DATABASES:
            note = ""
            if variant == "sqlite":
                note = f"{x(side_by_side['sqlite']['rps'], side_by_side['postgresql']['rps'])} "
                note += "postgresql"
            label = "GET /users/me c64 side by side"
            rows.append(row(label, variant, 1, "no", side_by_side[variant], note))
    return rows


def stack_rows(stacks: dict) -> list[list[str]]:
    default = stacks["stacks"][stacks["default"]]
    rows = []
    for name, figures in stacks["stacks"].items():
        for label, key, who in (
            ("GET /health c64", "ceiling_health_64", "ceiling"),
            ("GET /health c64", "health_64", "postgresql"),
            ("GET /users/me c64", "me_64", "postgresql"),
        ):
            note = "the services' stack"
            if name != stacks["default"]:
                note = (
                    f"{ratio(figures[key]['rps'], default[key]['rps']):.2f} x the services' stack"
                )
            rows.append(row(f"{label} [{name}]", who, 1, "no", figures[key], note))
    return rows


def statuses_text(result: dict) -> str:
    return ", ".join(f"{code}: {n}" for code, n in result.get("statuses", {}).items())


def scale_rows(scale: dict) -> list[list[str]]:
    n = scale["workers"]
    health = scale["health_64"]
    attack_run = scale["attack_64"]
    during = scale["health_64_during_attack"]
    legit = scale["legit_during_attack"]
    pg = "postgresql"
    return [
        row("GET /users/me c64", pg, 1, "yes", scale["me_64_w1"], ""),
        row(
            "GET /users/me c64",
            pg,
            n,
            "yes",
            scale["me_64_wn"],
            f"{scale['me_64_wn']['vs_w1']:.2f} x 1 worker req/s",
        ),
        row("GET /health c64", pg, n, "yes", health, ""),
        row(
            f"POST /auth/login wrong password c{ATTACK_CONNECTIONS}, 429/s",
            pg,
            n,
            "yes",
            attack_run,
            f"{ratio(attack_run['rps_429'], health['rps']):.2f} x /health req/s; "
            + statuses_text(attack_run),
            rps=attack_run["rps_429"],
            errors=attack_run["unexpected"],
        ),
        row(
            "GET /health c64 during 429 storm",
            pg,
            n,
            "yes",
            during,
            f"p99 {during['p99_vs_alone']:.2f} x alone",
        ),
        row(
            f"POST /auth/login other addresses c{LEGIT_CONNECTIONS} during 429 storm",
            pg,
            n,
            "yes",
            legit,
            f"{legit['ok']} of {legit['requests']} logged in",
            errors=legit["failed"],
        ),
    ]


def address_rows(found: dict) -> list[list[str]]:
    n, storm, during = found["workers"], found["storm"], found["health_64_during_storm"]
    pg = "postgresql"
    return [
        row("GET /health c64", pg, n, "yes", found["health_64"], ""),
        row(
            f"POST /auth/login wrong password c{ATTACK_CONNECTIONS}, an address per request, 429/s",
            pg,
            n,
            "yes",
            storm,
            f"{found['distinct_addresses']} addresses; " + statuses_text(storm),
            rps=storm["rps_429"],
            errors=storm["unexpected"],
        ),
        row(
            "GET /health c64 in the address storm's last seconds",
            pg,
            n,
            "yes",
            during,
            f"p99 {fmt(during['p99_vs_alone'], '.2f')} x alone",
        ),
    ]


def targets(results: dict) -> list[dict]:
    found: list[dict] = []

    def add(variant: str, name: str, value, limit: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        found.append(
            {"variant": variant, "target": name, "value": value, "limit": limit, "verdict": verdict}
        )

    if "ceiling" in results:
        base_targets(results, add)
    if "stacks" in results:
        stack_targets(results["stacks"], add)
    if "scale" in results:
        scale_targets(results["scale"], add)
    if "addresses" in results:
        address_targets(results["addresses"], add)
    return found


def base_targets(results: dict, add) -> None:
    ceiling = results["ceiling"]["health_64"]["rps"]
    bcrypt_ps = results["bcrypt"]["per_second"]
    for variant in base_variants(results):
        r = results.get(variant)
        if not r:
            continue
        me64, me256, limit = r["me_64"], r["me_256"], r["me_64_limit"]
        logged = ratio(r["health_64"]["rps"], r["health_64_warning"]["rps"])
        add(
            variant,
            "/health c64 req/s, request log on (INFO) vs off (WARNING)",
            logged,
            ">= 0.85",
            logged is not None and logged >= 0.85,
        )
        share = ratio(me64["rps"], limit["rps"])
        add(
            variant,
            "/users/me c64 req/s vs limit app",
            share,
            ">= 0.70",
            share is not None and share >= 0.7,
        )
        tail = ratio(me64["p99_ms"], limit["p99_ms"])
        add(
            variant,
            "/users/me c64 p99 vs limit app",
            tail,
            "<= 1.50",
            tail is not None and tail <= 1.5,
        )
        if variant == "sqlite" and "databases" in results:
            side_by_side = results["databases"]
            versus = ratio(side_by_side["sqlite"]["rps"], side_by_side["postgresql"]["rps"])
            add(
                variant,
                "/users/me c64 req/s vs postgresql's, side by side",
                versus,
                ">= 1.00",
                versus is not None and versus >= 1.0,
            )
        add(
            variant,
            "/users/me c64 req/s vs ceiling",
            ratio(me64["rps"], ceiling),
            ">= 0.20",
            me64["rps"] >= 0.2 * ceiling,
        )
        add(variant, "/users/me c64 p99 ms", me64["p99_ms"], "<= 100", me64["p99_ms"] <= 100)
        add(variant, "/users/me c256 errors", me256["errors"], "== 0", me256["errors"] == 0)
        add(
            variant,
            "/users/me c256 vs c64 req/s",
            ratio(me256["rps"], me64["rps"]),
            ">= 0.80",
            me256["rps"] >= 0.8 * me64["rps"],
        )
        add(
            variant,
            "/health c64 req/s vs ceiling",
            ratio(r["health_64"]["rps"], ceiling),
            ">= 0.70",
            r["health_64"]["rps"] >= 0.7 * ceiling,
        )
        storm_errors = r["login_16"]["errors"] + r["login_16_with_health"]["errors"]
        add(
            variant,
            "login storm (correct password) non-200 + transport errors",
            storm_errors,
            "== 0",
            storm_errors == 0,
        )
        p99x = r["health_64_during_storm"]["p99_vs_alone"]
        add(
            variant,
            "/health p99 during storm vs alone",
            p99x,
            "<= 3.0",
            p99x is not None and p99x <= 3.0,
        )
        login_share = ratio(r["login_16"]["rps"], bcrypt_ps)
        add(
            variant,
            "login req/s vs 1-core bcrypt rate",
            login_share,
            ">= 0.80",
            login_share is not None and login_share >= 0.8,
        )
        peak = r["rss_storm"]["peak_sampled_mb"]
        add(
            variant,
            "RSS during storm MB (peak sampled)",
            peak,
            "<= 150",
            peak is not None and peak <= 150,
        )
        idle = r["rss_idle_mb"]["VmRSS"]
        add(variant, "RSS idle MB", idle, "<= 100", idle <= 100)
        soak_r = r["soak"]
        bad = soak_r["status_5xx"] + soak_r["transport_errors"]
        add(variant, "soak 5xx + transport errors", bad, "== 0", bad == 0)
        limited = soak_r.get("status_429", 0)
        add(variant, "soak 429s (signup/refresh limits raised)", limited, "== 0", limited == 0)
        growth = soak_r["rss"].get("second_half_growth_mb")
        add(
            variant,
            "soak RSS growth 2nd half MB",
            growth,
            "<= 5",
            growth is not None and growth <= 5,
        )
        conns = r.get("pg_connections_after_soak")
        if conns:
            add(
                variant,
                "server connections after soak",
                conns["count"],
                f"<= pool {conns['pool_size']}",
                conns["count"] <= conns["pool_size"],
            )


def stack_targets(stacks: dict, add) -> None:
    """The services' stack (the rendered pins) is the fastest at /health, give or take 5%."""
    found = stacks["stacks"]
    own = found[stacks["default"]]["health_64"]["rps"]
    best_name, best = max(
        ((name, figures["health_64"]["rps"]) for name, figures in found.items()),
        key=lambda item: item[1],
    )
    share = ratio(own, best)
    add(
        stacks["default"],
        f"/health c64 req/s vs the fastest stack ({best_name})",
        share,
        ">= 0.95",
        share is not None and share >= 0.95,
    )


def scale_targets(scale: dict, add) -> None:
    v = f"{scale['variant']} w{scale['workers']}"
    vs_w1 = scale["me_64_wn"]["vs_w1"]
    add(
        v,
        f"/users/me c64 req/s, {scale['workers']} workers vs 1",
        vs_w1,
        ">= 1.30",
        vs_w1 is not None and vs_w1 >= 1.3,
    )
    me_errors = scale["me_64_w1"]["errors"] + scale["me_64_wn"]["errors"]
    add(v, "/users/me c64 errors, 1 and N workers", me_errors, "== 0", me_errors == 0)
    attack_run, health = scale["attack_64"], scale["health_64"]
    share = ratio(attack_run["rps_429"], health["rps"])
    add(
        v,
        "wrong-password storm 429/s vs /health req/s alone",
        share,
        ">= 0.50",
        share is not None and share >= 0.5,
    )
    probe = scale["budget_probe"]
    account_limit = int(scale["rate_limits"].get("RATE_LIMIT_LOGIN_ACCOUNT", "5/").split("/")[0])
    add(
        v,
        f"{BUDGET_PROBE_ATTEMPTS} sequential wrong passwords: hashed (401) / refused (429)",
        f"{probe.get('401', 0)}/{probe.get('429', 0)}",
        f"{account_limit}/{BUDGET_PROBE_ATTEMPTS - account_limit} (shared)",
        probe.get("401", 0) == account_limit
        and probe.get("429", 0) == BUDGET_PROBE_ATTEMPTS - account_limit,
    )
    unexpected = sum(
        scale[k]["unexpected"]
        for k in ("attack_64", "attack_with_health", "attack_with_legit")
        if k in scale
    )
    add(
        v,
        "storm answers other than 429/401 + transport errors",
        unexpected,
        "== 0",
        unexpected == 0,
    )
    health_p99_target(
        add, v, "/health p99 during 429 storm vs alone", scale["health_64_during_attack"]
    )
    legit = scale["legit_during_attack"]
    add(
        v,
        "logins from other addresses during storm: failed",
        legit["failed"],
        f"== 0 (of {legit['requests']})",
        legit["failed"] == 0 and legit["ok"] > 0,
    )
    add(
        v,
        "logins from other addresses during storm p99 ms",
        legit["p99_ms"],
        f"<= {LEGIT_P99_LIMIT_MS}",
        legit["p99_ms"] <= LEGIT_P99_LIMIT_MS,
    )


def address_targets(found: dict, add) -> None:
    v = f"{found['variant']} w{found['workers']}"
    distinct = found["distinct_addresses"]
    add(
        v,
        "address storm: distinct client addresses",
        distinct,
        f">= {ADDRESS_STORM_ADDRESSES}",
        distinct >= ADDRESS_STORM_ADDRESSES,
    )
    unexpected = found["storm"]["unexpected"]
    add(
        v,
        "address storm answers other than 429/401 + transport errors",
        unexpected,
        "== 0",
        unexpected == 0,
    )
    # Only attempts that are hashed count their address: the account's budget in each window
    # the storm spans (some answered after wrk stopped counting).
    budget = int(found["rate_limits"].get("RATE_LIMIT_LOGIN_ACCOUNT", "5/").split("/")[0])
    hashable = budget * (math.ceil(found["storm_seconds"] / 60) + 1)
    counted = found["storm_addresses_counted"]
    add(
        v,
        "address storm: addresses with a count in Redis",
        counted,
        f"<= the account's budget per minute of storm ({hashable})",
        counted <= hashable,
    )
    health_p99_target(
        add, v, "/health p99 in the address storm vs alone", found["health_64_during_storm"]
    )


def health_p99_target(add, variant: str, name: str, during: dict) -> None:
    """/health's p99 during a storm: at most 3 times its p99 alone."""
    p99x = during["p99_vs_alone"]
    add(variant, name, p99x, "<= 3.0", p99x is not None and p99x <= 3.0)


def configuration(results: dict) -> list[str]:
    lines = [
        f"make bench, {results['date']} on {results['machine']['cpu']} "
        f"({results['machine']['nproc']} cores), "
        f"template {results['machine']['template_revision']}; scenarios {','.join(SCENARIOS)}; "
        f"{SECONDS}s runs after {WARMUP}s warm-up"
        + (f", soak {SOAK_SECONDS}s" if "base" in SCENARIOS else "")
        + f"; wrk -t{WRK_THREADS} per load",
        f"load average at start {results['machine']['load_average_at_start'][0]:.2f}"
        + (
            f", at the end {results['machine']['load_average_at_end'][0]:.2f}"
            if "load_average_at_end" in results["machine"]
            else ""
        )
        + f"; bcrypt cost {BCRYPT_COST}, one thread: {results['bcrypt']['per_second']} checks/s "
        f"({results['bcrypt']['ms_each']} ms each)",
    ]
    served = results["config"]["served_as"]
    packages = results["machine"]["packages"]
    lines += [
        f"every server: {' '.join(served['command'])} (the Dockerfile's CMD; host and port "
        f"here 127.0.0.1 and a free port), on {DEFAULT_STACK.name} unless a row names its stack; "
        "its ENV: " + " ".join(f"{k}={v}" for k, v in served["dockerfile_env"].items()),
        "services: no .env (as in the image), settings at their defaults except "
        + " ".join(f"{k}={v}" for k, v in served["set"].items())
        + "; so CURRENT_ENVIRONMENT=prod, one JSON log line per request; ceiling: "
        "bench/ceiling_app.py, limit app: bench/limit_app.py, same command and stack",
        "packages: " + ", ".join(f"{name} {v}" for name, v in packages.items()),
    ]
    if "base" in SCENARIOS:
        raised = ", ".join(f"{k}={v}" for k, v in SOAK_RATE_LIMITS.items())
        lines.append(
            f"base: 1 worker, redis no; {ROUNDS} alternating rounds of the service, the same at "
            f"LOG_LEVEL=WARNING and the limit app; for the soak (sign-ups and refreshes from "
            f"127.0.0.1) {raised}; login limits at their defaults"
            + ("; then both variants side by side" if set(DATABASES) <= set(VARIANTS) else "")
        )
    if "stacks" in SCENARIOS:
        lines.append(
            f"stacks: postgresql, 1 worker, {ROUNDS} alternating rounds over every stack "
            "(other uvloop versions and granian installed into build/bench/stacks/, first on "
            "PYTHONPATH; asyncio: uvicorn --loop asyncio)"
        )
    scale = results.get("scale")
    if scale:
        limits = ", ".join(f"{k}={v}" for k, v in scale["rate_limits"].items())
        lines.append(
            f"scale: postgresql + use_redis=yes (Redis {scale['redis']['version']} at "
            f"{scale['redis']['url']}, REDIS_KEY_PREFIX={scale['redis']['key_prefix']}), "
            f"uvicorn --workers 1 vs {scale['workers']} ({SCALE_ROUNDS} alternating rounds), "
            f"pool {scale['pool']['size']} + "
            f"overflow {scale['pool']['max_overflow']} per worker; default limits: {limits}"
        )
        lines.append(
            f"scale: storm = {ATTACK_CONNECTIONS} connections of wrong-password logins for one "
            f"account, X-Forwarded-For {ATTACK_NET}.1-254 (one per request); other logins = "
            f"{LEGIT_CONNECTIONS} connections, another account's correct password, "
            f"X-Forwarded-For {LEGIT_NET}.1-254, {LEGIT_PAUSE_MS} ms pause between requests"
        )
    found = results.get("addresses")
    if found:
        lines.append(
            f"addresses: postgresql + use_redis=yes (Redis {found['redis']['version']}, "
            f"REDIS_KEY_PREFIX={found['redis']['key_prefix']}), uvicorn --workers "
            f"{found['workers']}, default limits; storm = {ATTACK_CONNECTIONS} connections of "
            "wrong-password logins for one account whose budget is spent, X-Forwarded-For a new "
            f"address of 10.0.0.0/8 per request, at least {ADDRESS_STORM_ADDRESSES} of them; "
            "/health measured in its last seconds"
        )
    return lines


def report(results: dict) -> str:
    out = [
        *configuration(results),
        "",
        table(scenario_rows(results), TABLE_HEADER),
        "",
    ]
    rows = []
    for variant in base_variants(results):
        r = results[variant]
        s = r["soak"]
        trend = s["rss"]
        conns = r.get("pg_connections_after_soak")
        rows.append(
            [
                variant,
                fmt(r["rss_idle_mb"]["VmRSS"]),
                fmt(r["rss_storm"]["peak_sampled_mb"]),
                fmt(r["rss_storm"]["after"]["VmHWM"]),
                f"{trend.get('first_mb')}/{trend.get('last_mb')}/{trend.get('max_mb')}",
                fmt(trend.get("slope_mb_per_min")),
                f"{s['requests']}",
                f"{s['status_5xx']}",
                f"{s.get('status_429', 0)}",
                f"{s['transport_errors']}",
                f"{conns['count']}/{conns['pool_size']}" if conns else "-",
            ]
        )
    if rows:
        header = ["variant", "RSS idle", "RSS storm peak", "HWM after storm"]
        header += ["soak RSS first/last/max", "MB/min", "soak req", "5xx", "429", "transport err"]
        header += ["pg conns/pool"]
        out += [table(rows, header), ""]
    scale = results.get("scale")
    if scale:
        hashed = scale["attack_hashed"]
        out += [
            f"scale: {BUDGET_PROBE_ATTEMPTS} sequential wrong passwords for the account on "
            f"{scale['workers']} workers: {statuses_text({'statuses': scale['budget_probe']})} "
            f"(RATE_LIMIT_LOGIN_ACCOUNT={scale['rate_limits'].get('RATE_LIMIT_LOGIN_ACCOUNT')},"
            f" shared); 401s among the storms' answers over the next "
            f"{hashed['storm_seconds']} s: {hashed['wrong_password_401']}; "
            f"PostgreSQL connections after /users/me: {scale['pg_connections_after_me']} "
            f"(at most {scale['workers']} x {scale['pool']['size'] + scale['pool']['max_overflow']}"
            f"); Redis keys written: {scale.get('redis_keys_written')}",
            "",
        ]
    target_rows = [
        [t["target"], t["variant"], fmt(t["value"]), t["limit"], t["verdict"]]
        for t in results["targets"]
    ]
    out.append(table(target_rows, ["target", "variant", "value", "limit", "verdict"]))
    return "\n".join(out)


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = shutil.which("wrk") or "wrk"
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    versions = {}
    for package in (
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
        "pydantic",
        "bcrypt",
        "uvloop",
        "httptools",
    ):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    git = shutil.which("git") or "git"
    revision = subprocess.run(  # noqa: S603
        [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(  # noqa: S603
        [git, "-C", str(ROOT), "status", "--porcelain", "--", "{{cookiecutter.project_slug}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "load_average_at_start": os.getloadavg(),
        "template_revision": revision + (" (service template modified)" if dirty else ""),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip()
        if (wrk_version.stdout or wrk_version.stderr)
        else "?",
        "packages": versions,
    }


def main() -> int:
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk (make bench does this)", file=sys.stderr)
        return 2
    unknown = sorted(set(SCENARIOS) - set(SCENARIO_GROUPS))
    if unknown or not SCENARIOS:
        print(f"BENCH_SCENARIOS: one or more of {','.join(SCENARIO_GROUPS)}", file=sys.stderr)
        return 2
    BUILD.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config": {
            "scenarios": SCENARIOS,
            "seconds": SECONDS,
            "warmup": WARMUP,
            "soak_seconds": SOAK_SECONDS,
            "wrk_threads": WRK_THREADS,
            "storm_connections": STORM_CONNECTIONS,
            "variants": VARIANTS,
            "rounds": ROUNDS,
            "stacks": STACKS,
            "served_as": {
                "command": DOCKER_CMD,
                "dockerfile_env": DOCKER_ENV,
                "set": {
                    "SECRET_KEY": f"<random, {len(SECRET_KEY)} characters>",
                    "DATABASE_URL": "<a fresh database>",
                    "LOG_LEVEL": f"{LOG_LEVEL} (.env.example's)",
                },
            },
            "base_rate_limits_for_the_soak": SOAK_RATE_LIMITS,
            "scale_workers": SCALE_WORKERS,
            "scale_rounds": SCALE_ROUNDS,
            "attack_connections": ATTACK_CONNECTIONS,
            "attack_addresses": f"{ATTACK_NET}.1-254, one per request",
            "legit_connections": LEGIT_CONNECTIONS,
            "legit_pause_ms": LEGIT_PAUSE_MS,
            "legit_addresses": f"{LEGIT_NET}.1-254, one per request",
            "address_storm_addresses": ADDRESS_STORM_ADDRESSES,
        },
    }
    load = results["machine"]["load_average_at_start"][0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before the bench; other work skews the figures")
    log("measuring one core's bcrypt rate")
    results["bcrypt"] = bcrypt_rate()
    log(f"bcrypt: {results['bcrypt']}")
    if "base" in SCENARIOS:
        results["ceiling"] = bench_ceiling()
        for variant in VARIANTS:
            results[variant] = bench_variant(variant)
        if set(DATABASES) <= set(VARIANTS):
            results["databases"] = bench_databases()
    if "stacks" in SCENARIOS:
        results["stacks"] = bench_stacks()
    if "scale" in SCENARIOS:
        results["scale"] = bench_scale()
    if "addresses" in SCENARIOS:
        results["addresses"] = bench_addresses()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = targets(results)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print()
    print(report(results))
    for variant in PROFILE:
        profile = results.get(variant, {}).get("profile")
        if profile and "self_pct" in profile:
            print(
                f"\npy-spy, {variant} GET /users/me c64, {profile['samples']} samples "
                f"({profile['raw']}):"
            )
            print("  " + ", ".join(f"{name} {pct}%" for name, pct in profile["roots_pct"]))
            print(
                "  self time by package: "
                + ", ".join(f"{name} {pct}%" for name, pct in profile["self_by_package_pct"][:8])
            )
            print("  inclusive (below the trunk):")
            for name, pct in profile["inclusive_pct"][:15]:
                print(f"    {pct:5.1f}%  {name}")
    print(f"\nfigures written to {OUT} (wall time {results['wall_seconds']} s)")
    failed = [t for t in results["targets"] if t["verdict"] == "FAIL"]
    return 1 if STRICT and failed else 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
