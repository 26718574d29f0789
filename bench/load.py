"""Load: wrk with its Lua scripts, its figures parsed, rounds combined, and RSS sampled."""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bench.config import BUILD, HOST, SECONDS, WARMUP, WRK_THREADS, log

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
STORM_LEAD_SECONDS = 2  # a storm runs alone this long before and after what is measured in it


def lua_script(name: str, prefix: str = "", *, statuses: bool = False) -> Path:
    """A wrk script: `prefix`, then the JSON report; `statuses` also tallies the responses by
    status (wrk then hands every response to Lua, which costs it some throughput).
    """
    path = BUILD / "lua" / f"{name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prefix + REPORT_LUA + (STATUS_LUA if statuses else ""), encoding="utf-8")
    return path


def get_script() -> Path:
    return lua_script("get")


def form(username: str, password: str) -> str:
    return urllib.parse.urlencode({"username": username, "password": password})


def login_script(username: str, password: str) -> Path:
    """A form login, every request alike."""
    return lua_script("login", LOGIN_LUA.replace("@BODY@", form(username, password)), statuses=True)


def logins_from_addresses(
    name: str, username: str, password: str, net: str, pause_ms: int = 0
) -> Path:
    """A form login from the addresses of `net` (a /24) in turn, pausing `pause_ms` between."""
    prefix = LOGIN_FROM_ADDRESSES_LUA.replace("@BODY@", form(username, password))
    prefix = prefix.replace("@NET@", net)
    if pause_ms:
        prefix += PAUSE_LUA.replace("@PAUSE_MS@", str(pause_ms))
    return lua_script(name, prefix, statuses=True)


def logins_from_distinct_addresses(
    name: str, username: str, password: str, net8: int, connections: int
) -> Path:
    """A form login, every request from an address of its own in `net8`.0.0.0/8."""
    threads = max(1, min(WRK_THREADS, connections))
    prefix = LOGIN_FROM_DISTINCT_ADDRESSES_LUA.replace("@BODY@", form(username, password))
    prefix = prefix.replace("@THREADS@", str(threads)).replace("@NET8@", str(net8))
    return lua_script(name, prefix, statuses=True)


def loopback_only(url: str) -> None:
    if urllib.parse.urlsplit(url).hostname != HOST:
        raise ValueError(f"refusing to load {url}: the bench targets {HOST} only")


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


def bearer(token: str) -> tuple[str, ...]:
    return (f"Authorization: Bearer {token}",)


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

    def run(self, seconds: int, label: str) -> dict:
        proc = self.start(seconds)
        return finish(proc, seconds, label)

    def measure(self, label: str, seconds: int = SECONDS) -> dict:
        """A warm-up (discarded), then the measured run."""
        if WARMUP > 0:
            self.run(WARMUP, f"{label}.warmup")
        result = self.run(seconds, label)
        log(
            f"{label}: {result['rps']} req/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, errors {result['errors']}"
        )
        return result


def finish(proc: subprocess.Popen[str], seconds: int, label: str) -> dict:
    try:
        stdout, _ = proc.communicate(timeout=seconds + 90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return wrk_result(stdout, label)


def interleaved(loads: dict[str, tuple[Load, str]], rounds: int) -> dict[str, dict]:
    """Each load measured in turn, `rounds` times (a warm-up before each one's first round), so
    that a change in the machine's other load weighs on all alike; the rounds combined.
    """
    runs: dict[str, list[dict]] = {key: [] for key in loads}
    for i in range(rounds):
        for key, (load, label) in loads.items():
            run_label = f"{label}.round{i + 1}"
            runs[key].append(load.measure(run_label) if i == 0 else load.run(SECONDS, run_label))
    return {key: combine(found) for key, found in runs.items()}


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

    def trend(self) -> dict:
        """The samples' first, last and peak, their slope, and the peak's growth over the run."""
        samples = self.samples
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
            # Growth of the peak from the first half to the second: ~0 when RSS has levelled.
            "second_half_growth_mb": round(max(values[half:]) - max(values[:half]), 1),
            "series_mb": values,
        }
