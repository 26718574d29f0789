"""`python -m bench` (what `make bench` runs): the groups of BENCH_SCENARIOS, then the report.

The overview and every knob: bench/__init__.py (`python -m bench --help`).
"""

import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import bench
from bench.config import (
    BUILD,
    OUT,
    RESULTS,
    RESULTS_MD,
    SCENARIOS,
    STRICT,
    knobs,
    log,
)
from bench.machine import bcrypt_rate, machine
from bench.pyspy import summaries
from bench.report import registered, report, targets
from bench.results import write
from bench.scenarios import GROUPS
from bench.serving import SERVED_AS


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(bench.__doc__)
        return 0
    if argv:
        print(
            "python -m bench takes no arguments; its knobs are variables (--help)", file=sys.stderr
        )
        return 2
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk (make bench does this)", file=sys.stderr)
        return 2
    unknown = sorted(set(SCENARIOS) - set(GROUPS))
    if unknown or not SCENARIOS:
        print(f"BENCH_SCENARIOS: one or more of {','.join(GROUPS)}", file=sys.stderr)
        return 2
    BUILD.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    groups = registered()
    settings = {key: value for group in groups for key, value in group.settings.items()}
    results: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config": knobs() | {"served_as": SERVED_AS} | settings,
    }
    load = results["machine"]["load_average_at_start"][0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before the bench; other work skews the figures")
    log("measuring one core's bcrypt rate")
    results["bcrypt"] = bcrypt_rate()
    log(f"bcrypt: {results['bcrypt']}")
    for group in groups:
        if group.name in SCENARIOS:
            group.run(results)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = targets(results)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print()
    print(report(results))
    for lines in summaries(results):
        print("\n" + "\n".join(lines))
    print(f"\nfigures written to {OUT} (wall time {results['wall_seconds']} s)")
    print(write(results, Path(RESULTS) if RESULTS else None, RESULTS_MD))
    failed = [t for t in results["targets"] if t["verdict"] == "FAIL"]
    return 1 if STRICT and failed else 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main(sys.argv[1:]))
