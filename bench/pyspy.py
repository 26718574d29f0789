"""BENCH_PROFILE: py-spy on a served variant during an extra /users/me run, and where its samples
go.
"""

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.config import BUILD, PYTHON, ROOT, SECONDS, log
from bench.load import Load, bearer, finish, get_script
from bench.serving import Server, admin_token


def profile_me(server: Server, variant: str) -> dict:
    py_spy = shutil.which("py-spy", path=str(PYTHON.parent)) or shutil.which("py-spy")
    if not py_spy:
        log("py-spy not found (pip install py-spy into .venv); no profile")
        return {"error": "py-spy not installed"}
    raw = BUILD / f"profile-{variant}-me.txt"
    load = Load(f"{server.base}/api/v1/users/me", 64, get_script(), bearer(admin_token(server)))
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


# Idle workers (thread pools, aiosqlite's connection threads) waiting on a queue, which py-spy
# reports as active.
IDLE_LEAVES = ("Condition.wait", "Queue.get", "_worker (concurrent")
IDLE_LEAVES += ("_connection_worker_thread (aiosqlite",)


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
        if frames[0].startswith("Thread._bootstrap") and frames[-1].startswith(IDLE_LEAVES):
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


def summaries(results: dict) -> list[list[str]]:
    """The profiles of this run, each as the lines printed after the report."""
    found = []
    for variant in results["config"].get("profile", []):
        profile = results.get(variant, {}).get("profile")
        if not profile or "self_pct" not in profile:
            continue
        by_package = profile["self_by_package_pct"][:8]
        found.append(
            [
                f"py-spy, {variant} GET /users/me c64, {profile['samples']} samples "
                f"({profile['raw']}):",
                "  " + ", ".join(f"{name} {pct}%" for name, pct in profile["roots_pct"]),
                "  self time by package: "
                + ", ".join(f"{name} {pct}%" for name, pct in by_package),
                "  inclusive (below the trunk):",
                *(f"    {pct:5.1f}%  {name}" for name, pct in profile["inclusive_pct"][:15]),
            ]
        )
    return found
