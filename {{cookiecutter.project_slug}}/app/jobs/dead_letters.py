"""Dead letters: jobs delivered more than `max_deliveries` times (each stopped its worker).

Such a job goes to the dead-letter stream `<stream>:dead` instead of running again, logged
with its arguments (secrets masked); `python -m app.cli jobs dead` lists them, `jobs retry ID`
queues one again.
"""

from typing import Any, cast

from loguru import logger
from redis.asyncio import ConnectionPool, Redis
from taskiq.abc.formatter import TaskiqFormatter

from app.jobs.logged import loggable_arguments

# A stream entry: its id and its fields.
Entry = tuple[bytes, dict[bytes, bytes]]
# Dead letters kept (oldest dropped first).
DEAD_LETTERS_KEPT = 10_000


class DeadLetters:
    """The dead-letter stream of a job stream read by one consumer group."""

    def __init__(
        self,
        *,
        connection_pool: ConnectionPool,
        stream: str,
        group: str,
        max_deliveries: int,
        formatter: TaskiqFormatter,
    ) -> None:
        self.connection_pool = connection_pool
        self.stream = stream
        self.group = group
        self.max_deliveries = max_deliveries
        self.formatter = formatter
        self.dead_letter_stream = f"{stream}:dead"

    async def below_max_deliveries(
        self, redis: Redis, consumer: str, claimed: list[Entry]
    ) -> list[Entry]:
        """The entries `consumer` claimed that may run again; the others become dead letters."""
        # Deleted entries come back without fields; ids sort by their two numbers.
        claimed = sorted(
            ((entry_id, fields) for entry_id, fields in claimed if fields),
            key=lambda entry: tuple(int(part) for part in entry[0].split(b"-")),
        )
        if not claimed:
            return []
        pending = await redis.xpending_range(
            self.stream,
            self.group,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed),
            consumername=consumer,
        )
        deliveries = {item["message_id"]: item["times_delivered"] for item in pending}
        runnable = []
        for entry_id, fields in claimed:
            delivered = int(deliveries.get(entry_id, 1))
            if delivered > self.max_deliveries:
                await self._bury(redis, entry_id, fields, delivered)
            else:
                runnable.append((entry_id, fields))
        return runnable

    async def _bury(
        self, redis: Redis, entry_id: bytes, fields: dict[bytes, bytes], delivered: int
    ) -> None:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_letter_stream,
                {b"data": fields[b"data"], b"id": entry_id, b"deliveries": delivered},
                maxlen=DEAD_LETTERS_KEPT,
                approximate=True,
            )
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        name, task_id, arguments = self.describe(fields[b"data"])
        logger.error(
            "Job {} ({}) dead-lettered after {} deliveries that never finished (its worker "
            "stopped each time); `python -m app.cli jobs dead` lists it; arguments {}",
            name,
            task_id,
            delivered,
            arguments,
        )

    def describe(self, data: bytes) -> tuple[str, str, dict[str, Any]]:
        """A job's task name, id and arguments as they may be logged (secrets masked)."""
        try:
            message = self.formatter.loads(data)
        except ValueError:
            return "?", "?", {}
        return message.task_name, message.task_id, loggable_arguments(message)

    async def oldest_first(self) -> list[tuple[str, int, bytes]]:
        """The dead letters, oldest first: (id, deliveries, the job's message)."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            entries = cast("list[Entry]", await redis.xrange(self.dead_letter_stream))
        return [
            (entry_id.decode(), int(fields[b"deliveries"]), fields[b"data"])
            for entry_id, fields in entries
        ]

    async def retry(self, dead_id: str) -> bool:
        """Queue a dead letter's job again; False if there is no such dead letter."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            found = cast(
                "list[Entry]", await redis.xrange(self.dead_letter_stream, min=dead_id, max=dead_id)
            )
            if not found:
                return False
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(self.stream, {b"data": found[0][1][b"data"]})
                pipe.xdel(self.dead_letter_stream, dead_id)
                await pipe.execute()
        return True
