"""The worker's side of the Redis queue: what it builds, its heartbeat, durability, consumer
names, dead letters.

Durability here is proven with brokers in this process; the template's own tests kill real
`taskiq worker` processes in the middle of a job, stop Redis under them, and feed them a job
that kills its worker.
"""

import asyncio
import inspect
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import pytest
from loguru import logger
from redis.asyncio import Redis

from app import worker
from app.cli import dead_letters_command
from app.core.config import MASK, Settings
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
    # The shortest redelivery time the settings allow for jobs that may run 0.4 s.
    settings = mail_settings(
        job_redeliver_after_seconds=2.5, job_timeout_seconds=0.4, job_max_attempts=1
    )
    runs: list[str] = []
    ran = asyncio.Event()

    async def once(name: str) -> None:
        runs.append(name)
        ran.set()

    # The first worker takes the job from the stream and dies before finishing it: nothing
    # acknowledges it.
    first = create_jobs(settings.model_copy(update={"worker_name": "elsewhere"}))
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


async def eventually(check: Callable[[], object], wanted: object = True) -> None:
    """Wait up to 10 s until `check()` (awaited if need be) is truthy, or equals `wanted`."""
    async with asyncio.timeout(10):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value == wanted if wanted is not True else bool(value):
                return
            await asyncio.sleep(0.02)


async def pending(settings: Settings, stream: str) -> int:
    """Jobs delivered to a worker and not acknowledged yet."""
    redis = Redis.from_url(TEST_REDIS_URL)
    try:
        summary = await redis.xpending(stream, f"{settings.redis_key_prefix}:workers")
    finally:
        await redis.aclose()
    return int(summary["pending"])


async def test_a_job_is_acknowledged_only_once_it_has_finished(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings()
    started, finish, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await finish.wait()
        finished.set()

    async with running_jobs(settings) as jobs:
        task = jobs.add(slow, "slow")
        await task.kiq()
        try:
            async with asyncio.timeout(10):
                await started.wait()
                # Running: still pending, so a worker that dies now leaves it for another.
                assert await pending(settings, jobs.broker.queue_name) == 1
                finish.set()
                await finished.wait()
                await eventually(lambda: pending(settings, jobs.broker.queue_name), 0)
        finally:
            finish.set()  # a failed check must not leave the worker's stop waiting for the job


async def test_two_live_workers_never_share_a_consumer_name(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(worker_name="same-host")
    async with running_jobs(settings) as first, running_jobs(settings) as second:
        await eventually(
            lambda: first.broker.consumer_lease.held and second.broker.consumer_lease.held
        )
        names = {first.broker.consumer_name, second.broker.consumer_name}
        assert names == {"same-host-0", "same-host-1"}
    # Both leases were released at the stop: a new worker gets the first name again.
    async with running_jobs(settings) as third:
        await eventually(lambda: third.broker.consumer_lease.held)
        assert third.broker.consumer_name == "same-host-0"


async def test_a_worker_takes_back_its_own_pending_jobs_at_start(
    mail_settings: Callable[..., Settings],
) -> None:
    # Jobs are taken over by others only after 300 s: only the same name gets it back sooner.
    settings = mail_settings(worker_name="restarted")
    runs: list[str] = []
    ran = asyncio.Event()

    async def once(name: str) -> None:
        runs.append(name)
        ran.set()

    first = create_jobs(settings)
    task = first.add(once, "once")
    await task.kiq(name="the job")
    deliveries = first.broker.listen()
    assert b"the job" in (await anext(deliveries)).data
    await deliveries.aclose()
    await first.stop()  # releases the name

    async with running_jobs(settings) as jobs:
        jobs.add(once, "once")
        async with asyncio.timeout(5):
            await ran.wait()
    assert runs == ["the job"]


async def test_a_job_delivered_too_often_goes_to_the_dead_letters(
    mail_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = mail_settings(worker_name="poisoned", job_max_deliveries=2)
    runs: list[str] = []
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="ERROR")

    async def poison(*args: str, reset_token: str) -> None:
        runs.append(reset_token)

    jobs = create_jobs(settings)
    task = jobs.add(poison, "poison")
    await task.kiq("ada@example.com", reset_token="t0k3n-s3cret")
    try:
        # Two deliveries that never finish, as when the job kills its worker each time.
        for _ in range(2):
            deliveries = jobs.broker.listen()
            await anext(deliveries)
            await deliveries.aclose()
            await jobs.broker.shutdown()  # the name is free again
        # The third delivery is one too many: dead-lettered, not run.
        async with running_jobs(settings) as worker_jobs:
            worker_jobs.add(poison, "poison")
            await eventually(worker_jobs.broker.dead_letters.oldest_first)
            [(dead_id, deliveries_count, _)] = await worker_jobs.broker.dead_letters.oldest_first()
            assert deliveries_count == 3
            assert runs == []
            assert await pending(settings, jobs.broker.queue_name) == 0
    finally:
        logger.remove(sink)
    [line] = [line for line in lines if "dead-lettered" in line]
    assert "Job poison" in line
    assert f"'reset_token': '{MASK}'" in line
    assert f"'#0': '{MASK}'" in line
    assert "s3cret" not in line
    assert "ada@example.com" not in line

    # `jobs dead` lists it, masked; `jobs retry ID` queues it again, and a worker runs it.
    assert await dead_letters_command(Namespace(jobs_command="dead"), settings) == 0
    listed = capsys.readouterr().out
    assert f"{dead_id}  poison (" in listed
    assert f"3 deliveries, arguments {dict.fromkeys(('reset_token', '#0'), MASK)}" in listed
    assert await dead_letters_command(Namespace(jobs_command="retry", id=dead_id), settings) == 0
    assert await dead_letters_command(Namespace(jobs_command="retry", id=dead_id), settings) == 1
    async with running_jobs(settings) as worker_jobs:
        worker_jobs.add(poison, "poison")
        await eventually(lambda: runs)
    assert runs == ["t0k3n-s3cret"]


async def test_idle_consumers_of_dead_workers_are_removed(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings()
    async with running_jobs(settings) as jobs:
        broker = jobs.broker
        redis = Redis.from_url(TEST_REDIS_URL)
        try:
            await eventually(lambda: broker.consumer_lease.held)
            stream, group = broker.queue_name, broker.consumer_group_name
            for name in ("gone-0", "alive-0"):
                await redis.xgroup_createconsumer(stream, group, name)
            # A live worker holds the lease on its name.
            await redis.set(broker.consumer_lease.key("alive-0"), "another worker", px=10_000)
            await broker.keep_alive()
            consumers = await redis.xinfo_consumers(stream, group)
        finally:
            await redis.aclose()
    names = {consumer["name"].decode() for consumer in consumers}
    assert "alive-0" in names
    assert "gone-0" not in names
