"""Faults under real `taskiq worker` processes of the PostgreSQL + Redis variant, on a private
redis-server: Redis stopped for 10 s and started again empty, workers killed (SIGKILL) in the
middle of a job or stopped (SIGTERM) with jobs read but not started, and a job that kills its
worker each time.

The jobs are test-only (`fault_jobs.py`, on the workers' PYTHONPATH); they write what they do to
a journal file.
"""

import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helpers import PYTHON, check, tool_env
from servers import RedisServer, tail
from test_job_processes import VARIANT, Worker, worker

pytestmark = pytest.mark.slow

# Where `fault_jobs.py` is: on the workers' PYTHONPATH.
TESTS = Path(__file__).parent
# Short enough for lean tests, and allowed by the settings' check: jobs of up to 2 s, one
# attempt (no retry wait), 2 s of margin.
REDELIVER_SECONDS = 5.0


class Faults:
    """The render, the private Redis, the environment of the worker processes, and the journal."""

    def __init__(self, root: Path, work: Path, redis: RedisServer) -> None:
        self.root, self.work, self.redis = root, work, redis
        self.journal = work / "journal"
        self.journal.touch()
        self.env = tool_env(
            PYTHONPATH=str(TESTS),
            FAULT_JOURNAL=str(self.journal),
            # Never connected to: these jobs use no database.
            DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none",
            REDIS_URL=redis.url,
            REDIS_KEY_PREFIX=f"faults-{secrets.token_hex(6)}",
            CURRENT_ENVIRONMENT="local",
            SECRET_KEY=secrets.token_urlsafe(64),
            LOG_LEVEL="INFO",
            LOG_JSON="false",
            JOB_REDELIVER_AFTER_SECONDS=str(REDELIVER_SECONDS),
            JOB_TIMEOUT_SECONDS="2",
            JOB_MAX_ATTEMPTS="1",
            JOB_MAX_DELIVERIES="5",
            FAULT_SLOW_SECONDS="1.5",
            WORKER_NAME="host",
            WORKER_HEARTBEAT_FILE=str(work / "heartbeat-host"),
        )

    def settings(self, **changes: str) -> dict[str, str]:
        env = {**self.env, **changes}
        env["WORKER_HEARTBEAT_FILE"] = str(self.work / f"heartbeat-{env['WORKER_NAME']}")
        return env

    def start(self, log: str, *options: str, **changes: str) -> AbstractContextManager[Worker]:
        return worker(
            self.root, self.settings(**changes), self.work / log, "fault_jobs:broker", *options
        )

    def kick(self, *specs: str, **changes: str) -> None:
        """Queue jobs; their timeout comes with them, from the settings of who queues them."""
        env = {**self.env, **changes}
        check([PYTHON, "-m", "fault_jobs", "kick", *specs], self.root, env, 60)

    def events(self, event: str, name: str) -> list[list[str]]:
        """The journal's lines for that event of that job: [event, name, worker, pid]."""
        lines = self.journal.read_text("utf-8").splitlines()
        return [line.split() for line in lines if line.split()[:2] == [event, name]]

    def wait(self, what: Callable[[], object], seconds: float, failure: str) -> float:
        """Wait until `what()` is truthy; the time it took."""
        began = time.monotonic()
        while not what():
            assert time.monotonic() - began < seconds, f"{failure} within {seconds} s"
            time.sleep(0.05)
        return time.monotonic() - began


@pytest.fixture(scope="module")
def faults(render_once, tmp_path_factory) -> Iterator[Faults]:
    work = tmp_path_factory.mktemp("job-faults")
    redis = RedisServer(work)
    redis.start()
    try:
        yield Faults(render_once(**VARIANT), work, redis)
    finally:
        redis.stop()


def lines_with(log: Path, text: str) -> list[str]:
    return [line for line in log.read_text("utf-8").splitlines() if text in line]


def test_a_worker_rides_out_a_redis_outage_and_stops_promptly(faults):
    log = faults.work / "outage.log"
    with faults.start("outage.log", WORKER_NAME="outage") as running:
        faults.kick("quick:before")
        faults.wait(lambda: faults.events("done", "before"), 10, "the first job was not done")
        heartbeat = running.heartbeat

        faults.redis.stop()
        # A worker started while Redis is down starts, and serves once it is back.
        with faults.start("late.log", WORKER_NAME="late") as late:
            down = time.monotonic()
            while time.monotonic() - down < 10:
                assert running.proc.poll() is None, tail(log)
                assert time.time() - heartbeat.stat().st_mtime < 7, "the heartbeat went stale"
                time.sleep(0.5)
            faults.redis.start()  # empty: no persistence
            restarted = time.time()
            faults.kick("quick:after")
            faults.wait(lambda: faults.events("done", "after"), 5, "no job done after Redis")

            # Each worker reads again within 5 s of Redis answering.
            for each in (log, faults.work / "late.log"):
                faults.wait(
                    lambda each=each: lines_with(each, "Redis answers again"), 5, f"{each}: no read"
                )
            # One process all along (taskiq respawns a worker that died), and one line each.
            assert len(lines_with(log, "Worker started")) == 1, tail(log)
            assert len(lines_with(log, "Redis unreachable")) == 1, tail(log)
            assert len(lines_with(log, "Redis answers again")) == 1, tail(log)
            # The heartbeat goes on after the outage too (Redis lost the worker's group and lease).
            faults.wait(
                lambda: heartbeat.stat().st_mtime > restarted + 1, 7, "no heartbeat after Redis"
            )
            assert running.stop(within=5) == 0, tail(log)

            # The worker started during the outage serves; once it has done 20 jobs, it stops
            # within 5 s of SIGTERM (no read outlives a stop).
            names = [f"batch-{n}" for n in range(20)]
            faults.kick(*(f"quick:{name}" for name in names))
            faults.wait(
                lambda: all(faults.events("done", name) for name in names), 10, "20 jobs not done"
            )
            assert {faults.events("done", name)[0][2] for name in names} == {"late"}
            assert late.stop(within=5) == 0, tail(faults.work / "late.log")


def test_a_killed_workers_job_is_done_by_its_restarted_worker_at_default_settings(faults):
    # The default redelivery time: only the restarted worker (the same name) can do it soon.
    defaults = {
        "JOB_REDELIVER_AFTER_SECONDS": "300",
        "JOB_TIMEOUT_SECONDS": "60",
        "JOB_MAX_ATTEMPTS": "5",
        "JOB_RETRY_DELAY_SECONDS": "10",
    }
    with faults.start("killed.log", **defaults) as first:
        faults.kick("slow_once:killed", **defaults)
        faults.wait(lambda: faults.events("start", "killed"), 10, "the job did not start")
        first.kill()
    with faults.start("restarted.log", **defaults) as second:
        faults.wait(lambda: faults.events("done", "killed"), 30, "the restarted worker idled")
        # The same consumer name: the lease of the killed process was free at once.
        assert lines_with(second.log, "consumer name: host-0"), tail(second.log)
        assert second.stop() == 0, tail(faults.work / "restarted.log")


def test_a_killed_workers_job_is_done_by_another_within_the_redelivery_time(faults):
    with (
        faults.start("alpha.log", WORKER_NAME="alpha") as alpha,
        faults.start("beta.log", WORKER_NAME="beta") as beta,
    ):
        faults.kick("slow_once:orphan")
        faults.wait(lambda: faults.events("start", "orphan"), 10, "the job did not start")
        [[_, _, taker, _]] = faults.events("start", "orphan")
        victim, other = (alpha, beta) if taker == "alpha" else (beta, alpha)
        victim.kill()
        # Pending since it started: taken over once it has been for REDELIVER_SECONDS.
        faults.wait(
            lambda: faults.events("done", "orphan"),
            REDELIVER_SECONDS + 1,
            "the other worker did not take the job over",
        )
        assert faults.events("done", "orphan")[0][2] != taker
        assert other.stop() == 0


def test_a_stopped_worker_hands_back_the_jobs_it_had_not_started(faults):
    names = [f"waiting-{n}" for n in range(5)]
    slow = {
        "FAULT_SLOW_SECONDS": "6",
        "JOB_TIMEOUT_SECONDS": "10",
        "JOB_REDELIVER_AFTER_SECONDS": "300",
    }
    # Queued before any worker runs, so one read takes them all; this worker runs one job at a
    # time, so the others wait in it, read but not started.
    faults.kick("slow_once:first", *(f"quick:{name}" for name in names), **slow)
    with faults.start(
        "greedy.log", "--max-async-tasks", "1", WORKER_NAME="greedy", **slow
    ) as greedy:
        faults.wait(lambda: faults.events("start", "first"), 10, "the first job did not start")
        # The other worker would take them over only after 300 s.
        with faults.start("other.log", WORKER_NAME="other", **slow) as other:
            os.killpg(greedy.proc.pid, signal.SIGTERM)
            faults.wait(
                lambda: all(faults.events("done", name) for name in names),
                5,
                "the jobs read but not started were not done by the other worker",
            )
            assert {faults.events("done", name)[0][2] for name in names} == {"other"}
            assert greedy.proc.wait(timeout=15) == 0, tail(faults.work / "greedy.log")
            # The running one was finished before the stop.
            assert [event[2] for event in faults.events("done", "first")] == ["greedy"]
            assert other.stop() == 0


def test_a_job_that_kills_its_worker_is_dead_lettered(faults):
    env = faults.settings(WORKER_NAME="victim", JOB_MAX_DELIVERIES="2")
    log = faults.work / "victim.log"
    with faults.start("victim.log", WORKER_NAME="victim", JOB_MAX_DELIVERIES="2") as running:
        faults.kick("poison:deadly", "quick:beside")
        # Delivered twice (each kills the worker process, which taskiq starts again under the
        # same consumer name), then dead-lettered on the third.
        faults.wait(lambda: lines_with(log, "dead-lettered"), 30, "the job was not dead-lettered")
        assert len(faults.events("start", "deadly")) == 2
        assert faults.events("done", "beside")
        [line] = lines_with(log, "dead-lettered")
        assert "Job poison" in line
        assert "after 3 deliveries" in line
        assert "{'#0': '**********'}" in line
        assert "deadly" not in line
        # The worker keeps serving.
        faults.kick("quick:later")
        faults.wait(lambda: faults.events("done", "later"), 5, "the worker stopped serving")
        assert running.proc.poll() is None

    listed = check([PYTHON, "-m", "app.cli", "jobs", "dead"], faults.root, env, 60)
    assert "poison (" in listed
    assert "3 deliveries" in listed
    assert "deadly" not in listed
