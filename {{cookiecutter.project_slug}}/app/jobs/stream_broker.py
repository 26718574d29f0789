"""taskiq-redis's Redis-stream broker, with three gaps of its version 1.2 closed.

- It looks for jobs left pending by a dead worker only after new jobs arrived: on a quiet
  queue, such a job would wait for the next request. Here every read of the stream first takes
  over the jobs pending longer than `idle_timeout` (XAUTOCLAIM, atomic: one taker per job).
- Acknowledging a job (XACK) leaves its entry in the stream, which then grows for ever; here
  the entry is deleted with it, so the stream holds only jobs not yet done.
- Its read loop can outlive a stop: redis-py 8.1 at times swallows the cancellation that
  arrives during a command, and the loop went on reading for ever. Here the loop checks for a
  pending cancellation of its task before each look at the stream, and an empty stream is
  looked at again after a sleep of `xread_block` milliseconds instead of a blocking read.
"""

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

from redis.asyncio import Redis
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

Entry = tuple[bytes, dict[bytes, bytes]]
# XAUTOCLAIM answers [next start, [entry, ...], [deleted ids]].
Reclaimed = tuple[bytes, list[Entry], list[bytes]]
# XREADGROUP answers [[stream, [entry, ...]]], or nothing.
Fetched = list[tuple[bytes, list[Entry]]] | None


class DurableStreamBroker(RedisStreamBroker):
    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack_and_delete() -> None:
            async with (
                Redis(connection_pool=self.connection_pool) as redis,
                redis.pipeline(transaction=True) as pipe,
            ):
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()

        return ack_and_delete

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        task = asyncio.current_task()
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
                reclaimed = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                entries = list(cast("Reclaimed", reclaimed)[1])
                if not entries:
                    fetched = await redis.xreadgroup(
                        self.consumer_group_name,
                        self.consumer_name,
                        {self.queue_name: ">"},
                        count=self.count,
                    )
                    for _, new in cast("Fetched", fetched) or []:
                        entries.extend(new)
                if not entries:
                    await asyncio.sleep(self.block / 1000)
                for entry_id, fields in entries:
                    yield AckableMessage(
                        data=fields[b"data"],
                        ack=self._ack_generator(entry_id.decode(), self.queue_name),
                    )
