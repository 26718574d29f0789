"""The worker's side of the Redis queue: what it builds, its heartbeat, and durability.

Durability here is proven with brokers in this process; the template's own tests kill real
`taskiq worker` processes in the middle of a job.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app import worker
from app.core.config import Settings
from app.core.logger import setup_logging
from app.jobs.broker import create_jobs
from app.jobs.stream_broker import DurableStreamBroker
from tests.helpers import TEST_REDIS_URL, TEST_SETTINGS, running_jobs

pytestmark = pytest.mark.usefixtures("redis_required")


def test_the_factory_builds_a_broker_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_KEY_PREFIX", "factory-test")
    try:
        broker = worker.broker()
    finally:
        setup_logging(TEST_SETTINGS)  # the factory set up logging from the environment
    assert isinstance(broker, DurableStreamBroker)
    assert broker.queue_name == "factory-test:jobs"
    assert "send_password_reset" in broker.get_all_tasks()


async def test_a_running_worker_keeps_its_heartbeat_fresh(
    mail_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    heartbeat = tmp_path / "heartbeat"
    async with running_jobs(mail_settings(worker_heartbeat_file=heartbeat)):
        async with asyncio.timeout(10):
            while not heartbeat.exists():  # noqa: ASYNC110 - a file, not an event
                await asyncio.sleep(0.02)
        assert time.time() - heartbeat.stat().st_mtime < worker.HEARTBEAT_SECONDS + 1
    assert not heartbeat.exists()  # a stopped worker leaves no heartbeat behind


async def test_a_job_queued_with_no_worker_runs_when_one_starts(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings()
    ran = asyncio.Event()

    async def remembered() -> None:
        ran.set()

    producer = create_jobs(settings)
    task = producer.broker.register_task(remembered, task_name="remembered")
    await task.kiq()  # no consumer group exists yet
    await producer.stop()
    await asyncio.sleep(0.2)
    assert not ran.is_set()
    async with running_jobs(settings) as jobs:
        jobs.broker.register_task(remembered, task_name="remembered")
        async with asyncio.timeout(10):
            await ran.wait()
            # Acknowledged, the job leaves the stream: it holds only jobs not yet done.
            redis = Redis.from_url(TEST_REDIS_URL)
            try:
                while await redis.xlen(jobs.broker.queue_name):  # noqa: ASYNC110 - Redis
                    await asyncio.sleep(0.02)
            finally:
                await redis.aclose()


async def test_a_job_its_worker_never_finished_goes_to_another(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(job_redeliver_after_seconds=1)
    runs: list[str] = []
    ran = asyncio.Event()

    async def once(name: str) -> None:
        runs.append(name)
        ran.set()

    # The first worker takes the job from the stream and dies before finishing it: nothing
    # acknowledges it.
    first = create_jobs(settings)
    task = first.broker.register_task(once, task_name="once")
    await first.broker.startup()
    await task.kiq(name="the job")
    deliveries = first.broker.listen()
    taken = await anext(deliveries)
    assert b"the job" in taken.data
    await deliveries.aclose()
    await first.stop()

    async with running_jobs(settings) as jobs:
        jobs.broker.register_task(once, task_name="once")
        async with asyncio.timeout(15):
            await ran.wait()
        await asyncio.sleep(0.5)
    assert runs == ["the job"]
