"""Jobs are retried with a growing wait, a bounded number of times, and a job that fails for
good is logged with its arguments, secrets masked.
"""

import asyncio
from collections.abc import Callable

import pytest
from loguru import logger

from app.core.config import Settings
from app.jobs.broker import MASK, redact
from tests.helpers import running_jobs
{%- if cookiecutter.use_redis %}

pytestmark = pytest.mark.usefixtures("redis_required")
{%- endif %}


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if "failed for good" in line]


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
    lines: list[str] = []
    logged = asyncio.Event()

    def collect(line: str) -> None:
        lines.append(line)
        if failures(lines):
            logged.set()

    sink = logger.add(collect, format="{message}", level="ERROR")

    async def always_fails(email: str, reset_token: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) == 3:
            done.set()
        msg = "the mail server said no"
        raise ConnectionError(msg)

    try:
        async with running_jobs(settings) as jobs:
            task = jobs.broker.register_task(always_fails, task_name="always_fails")
            await task.kiq(email="ada@example.com", reset_token="t0k3n-s3cret")
            async with asyncio.timeout(15):
                await done.wait()
                await logged.wait()
            await asyncio.sleep(0.3)  # no fourth attempt comes
    finally:
        logger.remove(sink)
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
