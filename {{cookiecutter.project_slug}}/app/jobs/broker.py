"""The job queue: a taskiq broker built from the settings, with bounded retries and a timeout.
{%- if cookiecutter.use_redis %}

Jobs go through a Redis stream, `<REDIS_KEY_PREFIX>:jobs`, which the workers (`app/worker.py`)
read as one consumer group: each job goes to one worker, and is acknowledged (and deleted) only
once it has finished (taskiq's `when_saved`). The job of a worker that died stays pending: a
worker restarted on the same host takes it back at start, any other worker after
JOB_REDELIVER_AFTER_SECONDS; a job that stopped its worker more than JOB_MAX_DELIVERIES times
goes to the dead letters (`dead_letters.py`). Jobs must therefore be idempotent. Each job runs
for at most JOB_TIMEOUT_SECONDS, so a running job is never handed to a second worker.
{%- else %}

Jobs run in this process, after the response, on taskiq's in-memory broker, each for at most
JOB_TIMEOUT_SECONDS. They are not durable: a job in flight or waiting for a retry is lost when
the process stops. That suits development and a single node; render the template with Redis
for a durable queue read by separate worker processes.
{%- endif %}
"""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from loguru import logger
from taskiq import AsyncTaskiqDecoratedTask, TaskiqMessage
from taskiq.acks import AcknowledgeType
{%- if cookiecutter.use_redis %}
from taskiq.exceptions import SendTaskError
{%- else %}
from taskiq.brokers.inmemory_broker import InMemoryBroker
{%- endif %}
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SmartRetryMiddleware
from taskiq.result import TaskiqResult

from app.core.clock import utc_now
from app.core.config import MAX_RETRY_DELAY_SECONDS, Settings
{%- if cookiecutter.use_redis %}
from app.core.exceptions import ServiceUnavailableError
{%- else %}
from app.jobs.context import JobContext
{%- endif %}
from app.jobs.logged import loggable_arguments
from app.jobs.password_reset import send_password_reset
{%- if cookiecutter.use_redis %}
from app.jobs.stream_broker import DurableStreamBroker

# How long one blocking read of an empty stream waits, in milliseconds; a new job ends it at
# once. Between reads the worker looks for jobs left pending by dead workers.
STREAM_POLL_MS = 500
# Jobs a worker takes from the stream at once (they are pending on that worker until done).
JOBS_READ_AT_ONCE = 10
# How long a worker's consumer name stays leased without a renewal: three heartbeats.
CONSUMER_LEASE_SECONDS = 15.0
{%- else %}

# At shutdown, how long the jobs still running get to finish.
SHUTDOWN_WAIT_SECONDS = 10.0
{%- endif %}


class RetryWithBackoff(SmartRetryMiddleware):
    """taskiq's retry middleware, bounded (JOB_MAX_ATTEMPTS) with a growing wait.

    The wait happens where the job failed, before the retry is queued: no scheduler process is
    needed for delays, and
    {%- if cookiecutter.use_redis %} the failed delivery is acknowledged only after the retry is
    queued, so a worker that dies while waiting leaves the job pending for another.
    {%- else %} a retry waiting in this process is lost if it stops.
    {%- endif %}
    After the last attempt the job is logged with its arguments, secrets masked.
    """

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        await kicker.kiq(*message.args, **message.kwargs)

    async def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        # Read before the retry is queued: queuing it updates the message's labels.
        attempts = int(message.labels.get("_retries", 0)) + 1
        final = attempts >= int(message.labels.get("max_retries", self.default_retry_count))
        await super().on_error(message, result, exception)
        if final:
            logger.error(
                "Job {} ({}) failed for good after {} attempt(s): {}: {}; arguments {}",
                message.task_name,
                message.task_id,
                attempts,
                type(exception).__name__,
                exception,
                loggable_arguments(message),
            )


class Jobs:
    {%- if cookiecutter.use_redis %}
    """The app's jobs on one broker: methods queue them, the broker runs them in the workers."""

    def __init__(self, broker: DurableStreamBroker, timeout_seconds: float) -> None:
    {%- else %}
    """The app's jobs on one broker: methods queue them, the broker runs them."""

    def __init__(self, broker: InMemoryBroker, timeout_seconds: float) -> None:
    {%- endif %}
        self.broker = broker
        self.timeout_seconds = timeout_seconds
        self.send_password_reset = self.add(send_password_reset, "send_password_reset")

    def add(self, function: Callable[..., Any], name: str) -> AsyncTaskiqDecoratedTask[Any, Any]:
        """Register a job: acknowledged once it has finished, cut off after the timeout."""
        return self.broker.register_task(
            function,
            task_name=name,
            ack_type=AcknowledgeType.WHEN_SAVED.value,
            timeout=self.timeout_seconds,
        )
    {%- if cookiecutter.use_redis %}

    async def stop(self) -> None:
        """Close the connections to Redis."""
        await self.broker.shutdown()
    {%- else %}

    async def start(self, context: JobContext) -> None:
        """Run the jobs in this process, with these resources."""
        self.broker.add_dependency_context({JobContext: context})
        await self.broker.startup()

    async def stop(self) -> None:
        """Give the jobs still running a little time to finish; then stop."""
        try:
            async with asyncio.timeout(SHUTDOWN_WAIT_SECONDS):
                await self.broker.wait_all()
        except TimeoutError:
            logger.warning("Jobs still running at shutdown were abandoned")
        await self.broker.shutdown()
    {%- endif %}

    async def request_password_reset(self, email: str) -> None:
        """Queue the e-mail with a reset link for the account of `email`, if there is one."""
        await self._queue(
            self.send_password_reset, email=email, request_id=uuid.uuid4(), requested_at=utc_now()
        )

    async def _queue(self, task: AsyncTaskiqDecoratedTask[Any, Any], **arguments: Any) -> None:
        {%- if cookiecutter.use_redis %}
        try:
            await task.kiq(**arguments)
        except SendTaskError as exc:
            logger.warning(
                "Job queue unreachable ({}): {} not queued",
                type(exc.__cause__).__name__,
                task.task_name,
            )
            raise ServiceUnavailableError(
                "The job queue is unavailable; try again shortly", headers={"Retry-After": "5"}
            ) from exc
        {%- else %}
        await task.kiq(**arguments)
        {%- endif %}


def create_jobs(settings: Settings) -> Jobs:
    """The jobs on a broker built from the settings; building does no I/O."""
    {%- if cookiecutter.use_redis %}
    broker = DurableStreamBroker(
        settings.redis_url,
        worker_name=settings.worker_name,
        max_deliveries=settings.job_max_deliveries,
        lease_seconds=CONSUMER_LEASE_SECONDS,
        queue_name=f"{settings.redis_key_prefix}:jobs",
        consumer_group_name=f"{settings.redis_key_prefix}:workers",
        # A consumer group created after jobs were queued still gets them.
        consumer_id="0",
        idle_timeout=int(settings.job_redeliver_after_seconds * 1000),
        # A blocking read must end before the socket timeout, which would read as an outage.
        xread_block=min(STREAM_POLL_MS, int(settings.redis_socket_timeout * 500)),
        xread_count=JOBS_READ_AT_ONCE,
        unacknowledged_batch_size=JOBS_READ_AT_ONCE,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        health_check_interval=30,
    )
    {%- else %}
    broker = InMemoryBroker()
    {%- endif %}
    broker.add_middlewares(
        RetryWithBackoff(
            default_retry_count=settings.job_max_attempts,
            default_retry_label=True,
            default_delay=settings.job_retry_delay_seconds,
            use_delay_exponent=True,
            max_delay_exponent=MAX_RETRY_DELAY_SECONDS,
            use_jitter=True,
        )
    )
    return Jobs(broker, settings.job_timeout_seconds)
