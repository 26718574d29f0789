"""Test-only jobs for the worker fault tests (`test_job_faults.py`), kept out of the rendered app.

`taskiq worker fault_jobs:broker` runs the app's worker with these jobs added;
`python -m fault_jobs kick JOB:NAME ...` queues jobs. Each job writes `<event> <name>
<WORKER_NAME> <pid>` lines to the file FAULT_JOURNAL: `start`, then `done`.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

from app.core.config import load_settings
from app.core.logger import setup_logging
from app.jobs.broker import Jobs, create_jobs
from app.worker import Worker
from taskiq import AsyncBroker


def note(event: str, name: str) -> None:
    line = f"{event} {name} {os.environ.get('WORKER_NAME', '-')} {os.getpid()}\n"
    with Path(os.environ["FAULT_JOURNAL"]).open("a", encoding="utf-8") as journal:
        journal.write(line)


async def quick(name: str) -> None:
    note("start", name)
    note("done", name)


async def slow_once(name: str) -> None:
    """Takes `FAULT_SLOW_SECONDS` on its first delivery, no time on the next ones."""
    first = f"start {name} " not in Path(os.environ["FAULT_JOURNAL"]).read_text("utf-8")
    note("start", name)
    if first:
        await asyncio.sleep(float(os.environ.get("FAULT_SLOW_SECONDS", "60")))
    note("done", name)


async def poison(name: str) -> None:
    """Kills its worker, as a segfault or the OOM killer would."""
    note("start", name)
    os.kill(os.getpid(), signal.SIGKILL)


def add_jobs(jobs: Jobs) -> None:
    for job in (quick, slow_once, poison):
        jobs.add(job, job.__name__)


def broker() -> AsyncBroker:
    """The app's worker broker (as `app.worker:broker` builds it), with the jobs above."""
    settings = load_settings()
    setup_logging(settings)
    worker = Worker(settings)
    add_jobs(worker.jobs)
    return worker.jobs.broker


async def kick(*specs: str) -> None:
    jobs = create_jobs(load_settings())
    add_jobs(jobs)
    tasks = jobs.broker.get_all_tasks()
    for spec in specs:
        job, name = spec.split(":")
        await tasks[job].kiq(name)
    await jobs.stop()


if __name__ == "__main__" and sys.argv[1] == "kick":
    asyncio.run(kick(*sys.argv[2:]))
