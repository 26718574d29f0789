"""The job worker: `taskiq worker app.worker:broker --workers 1` (`make worker`).

`broker` is a factory, which taskiq calls in each worker process: importing this module reads
no settings and builds nothing. At start-up the worker builds what jobs use (database, mailer)
and touches WORKER_HEARTBEAT_FILE every few seconds while its event loop runs; its liveness
probe reads the file's age, so a worker whose loop is stuck is restarted, and a Redis or
database outage restarts nothing: the worker waits for Redis (`stream_broker.py`), and jobs
survive a database outage by retrying. Each beat also renews the lease on the worker's consumer
name and removes consumers of dead workers from the group.
"""

import asyncio
import contextlib

import anyio
from loguru import logger
from taskiq import AsyncBroker, TaskiqEvents, TaskiqState

from app.core.config import Need, Settings, load_settings
from app.core.db import Database
from app.core.logger import setup_logging
from app.jobs.broker import Jobs, create_jobs
from app.jobs.context import JobContext
from app.services.email import EmailTemplates, Mailer

# A third of the consumer name's lease (CONSUMER_LEASE_SECONDS in `app/jobs/broker.py`).
HEARTBEAT_SECONDS = 5.0


class Worker:
    """A worker process's jobs and their resources, built at its start and closed at its end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: Jobs = create_jobs(settings)
        self._database: Database | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        broker = self.jobs.broker
        broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, self.start)
        broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, self.stop)

    async def start(self, _: TaskiqState) -> None:
        settings = self.settings
        self._database = Database.from_settings(settings)
        self.jobs.broker.add_dependency_context(
            {
                JobContext: JobContext(
                    settings=settings,
                    database=self._database,
                    mailer=Mailer.from_settings(settings),
                    templates=EmailTemplates(),
                )
            }
        )
        self._heartbeat = asyncio.create_task(self._beat())
        logger.info("Worker started: jobs from {}", self.jobs.broker.queue_name)

    async def stop(self, _: TaskiqState) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await anyio.Path(self.settings.worker_heartbeat_file).unlink(missing_ok=True)
        if self._database is not None:
            await self._database.dispose()

    async def _beat(self) -> None:
        heartbeat = anyio.Path(self.settings.worker_heartbeat_file)
        while True:
            await heartbeat.touch()
            # Bounded by the Redis timeouts; an outage is logged by the broker, not raised.
            await self.jobs.broker.keep_alive()
            await asyncio.sleep(HEARTBEAT_SECONDS)


def broker() -> AsyncBroker:
    """The broker of a worker process, from the environment and `.env` (taskiq calls this).

    Jobs send the password-reset mail: the worker needs the mail settings, not the API's
    secrets.
    """
    settings = load_settings(Need.MAIL)
    setup_logging(settings)
    return Worker(settings).jobs.broker
