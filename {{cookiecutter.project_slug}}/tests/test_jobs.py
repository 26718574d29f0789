"""Jobs are retried with a growing wait, a bounded number of times, and a job that fails for
good is logged with its arguments, secrets and positional arguments masked.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from loguru import logger

from app.core.config import MASK, Settings
from app.jobs.logged import redact
from tests.helpers import running_jobs
{%- if cookiecutter.use_redis %}

pytestmark = pytest.mark.usefixtures("redis_required")
{%- endif %}


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if "failed for good" in line]


@contextmanager
def error_log() -> Iterator[tuple[list[str], asyncio.Event]]:
    """The ERROR lines logged meanwhile, and an event set once one says "failed for good"."""
    lines: list[str] = []
    logged = asyncio.Event()

    def collect(line: str) -> None:
        lines.append(line)
        if failures(lines):
            logged.set()

    sink = logger.add(collect, format="{message}", level="ERROR")
    try:
        yield lines, logged
    finally:
        logger.remove(sink)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("email", False),
        ("count", False),
        ("reset_token", True),
        ("new_password", True),
        ("api_key", True),
        ("Client_Secret", True),
    ],
)
def test_secret_arguments_are_masked(name: str, masked: bool) -> None:
    value = "a value"
    assert redact({name: value}) == {name: MASK if masked else value}


async def test_a_failing_job_is_retried_then_logged_without_its_secrets(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(job_max_attempts=3, job_retry_delay_seconds=0.01)
    attempts: list[float] = []
    done = asyncio.Event()

    async def always_fails(email: str, reset_token: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) == 3:
            done.set()
        msg = "the mail server said no"
        raise ConnectionError(msg)

    with error_log() as (lines, logged):
        async with running_jobs(settings) as jobs:
            task = jobs.broker.register_task(always_fails, task_name="always_fails")
            await task.kiq(email="ada@example.com", reset_token="t0k3n-s3cret")
            async with asyncio.timeout(15):
                await done.wait()
                await logged.wait()
            await asyncio.sleep(0.3)  # no fourth attempt comes
    assert len(attempts) == 3
    # The n-th retry waits n x JOB_RETRY_DELAY_SECONDS (plus jitter): the waits grow.
    assert attempts[1] - attempts[0] >= 0.01
    assert attempts[2] - attempts[1] >= 0.02
    [line] = failures(lines)
    assert "Job always_fails" in line
    assert "failed for good after 3 attempt(s): ConnectionError: the mail server said no" in line
    assert "'email': 'ada@example.com'" in line
    assert f"'reset_token': '{MASK}'" in line
    assert "t0k3n-s3cret" not in line


async def test_a_job_that_succeeds_on_a_retry_logs_no_failure(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(job_max_attempts=3, job_retry_delay_seconds=0.01)
    attempts: list[int] = []
    done = asyncio.Event()
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="ERROR")

    async def fails_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            msg = "a passing hiccup"
            raise TimeoutError(msg)
        done.set()

    try:
        async with running_jobs(settings) as jobs:
            task = jobs.broker.register_task(fails_once, task_name="fails_once")
            await task.kiq()
            async with asyncio.timeout(15):
                await done.wait()
    finally:
        logger.remove(sink)
    assert len(attempts) == 2
    assert not failures(lines)


async def test_positional_arguments_are_masked_when_a_job_fails_for_good(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(job_max_attempts=1)

    async def fails(address: str, secret: str) -> None:
        msg = "no"
        raise ValueError(msg)

    with error_log() as (lines, logged):
        async with running_jobs(settings) as jobs:
            task = jobs.add(fails, "fails")
            # Positional arguments have no name that could say they are secret.
            await task.kiq("ada@example.com", "s3cret-by-position")
            async with asyncio.timeout(10):
                await logged.wait()
    [line] = failures(lines)
    assert f"arguments {dict.fromkeys(('#0', '#1'), MASK)}" in line
    assert "s3cret-by-position" not in line


async def test_a_job_running_past_its_timeout_is_cut_off(
    mail_settings: Callable[..., Settings],
) -> None:
    settings = mail_settings(job_max_attempts=1, job_timeout_seconds=0.2)
    finished = asyncio.Event()

    async def hangs() -> None:
        await asyncio.sleep(30)
        finished.set()

    with error_log() as (lines, logged):
        async with running_jobs(settings) as jobs:
            await jobs.add(hangs, "hangs").kiq()
            async with asyncio.timeout(10):
                await logged.wait()
    [line] = failures(lines)
    assert "Job hangs" in line
    assert "TimeoutError" in line
    assert not finished.is_set()
