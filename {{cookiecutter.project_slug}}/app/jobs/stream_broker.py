"""taskiq-redis's Redis-stream broker, made to survive Redis outages, killed workers and poison
jobs.

- Outages: no Redis error leaves `listen` (taskiq would restart the worker process for it).
  The worker logs the outage once, waits (up to `OUTAGE_MAX_WAIT_SECONDS` between tries) and
  logs the recovery once. A Redis that comes back empty has lost the stream and the consumer
  group: the first read that says so (`NOGROUP`) creates them again.
- The consumer name is leased (`consumer_lease.py`): a restarted worker gets its old name back
  and, at start, takes back the jobs it left pending (its own pending entries, whatever their
  idle time).
- Jobs left pending by a worker that died elsewhere are taken over once they have been pending
  for `idle_timeout` (XAUTOCLAIM, atomic: one taker per job). Every read first looks for them.
  A job delivered too often goes to the dead letters (`dead_letters.py`) instead.
- A job is acknowledged and deleted in one transaction, so the stream holds only jobs not yet
  done. Jobs read but not yet started when the worker stops go back to the stream at once.

The read is a blocking XREADGROUP, which a stop cancels. redis-py 8.1 at times swallows a
cancellation that arrives during a command (the command then returns, and the task stays marked
as cancelling), so the loop checks for a pending cancellation around every read, in whichever
task runs it: taskiq reads each message in a new task.
"""

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from app.jobs.consumer_lease import ConsumerLease
from app.jobs.dead_letters import DeadLetters, Entry

# XREADGROUP answers [[stream, [entry, ...]]], or nothing.
Fetched = list[tuple[bytes, list[Entry]]] | None
# XAUTOCLAIM answers [next start, [entry, ...], [deleted ids]].
Reclaimed = tuple[bytes, list[Entry], list[bytes]]

# Errors that mean "Redis is not answering" (down, restarting, failed over to a replica).
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
OUTAGE_FIRST_WAIT_SECONDS = 0.25
# The longest wait between two tries while Redis is down: jobs resume this soon after it answers.
OUTAGE_MAX_WAIT_SECONDS = 2.0


def stop_if_cancelled() -> None:
    """Raise the cancellation a command swallowed, if the running task has one pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class DurableStreamBroker(RedisStreamBroker):
    """Reads the job stream as one consumer of the group, under a leased consumer name."""

    def __init__(
        self,
        url: str,
        *,
        worker_name: str,
        max_deliveries: int,
        lease_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, **kwargs)
        self.consumer_lease = ConsumerLease(
            stream=self.queue_name,
            group=self.consumer_group_name,
            worker_name=worker_name,
            lease_seconds=lease_seconds,
            name=self.consumer_name,
        )
        self.dead_letters = DeadLetters(
            connection_pool=self.connection_pool,
            stream=self.queue_name,
            group=self.consumer_group_name,
            max_deliveries=max_deliveries,
            formatter=self.formatter,
        )
        # Where the next look at this name's own pending jobs starts; None once all were taken.
        self._own_pending_from: str | None = "-"
        self._redis_down = False

    # --- Redis outages --------------------------------------------------------------------

    def redis_unreachable(self, exc: BaseException) -> None:
        """Note an outage: logged once, however many reads and renewals fail during it."""
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "Redis unreachable ({}): the worker waits for it, taking no job",
                type(exc).__name__,
            )

    async def redis_answers(self) -> None:
        if self._redis_down:
            self._redis_down = False
            # Idle connections opened before the outage are dead: drop them, so that their next
            # user does not report a second outage.
            await self.connection_pool.disconnect(inuse_connections=False)
            logger.info("Redis answers again: the worker takes jobs again")

    async def _declare_consumer_group(self) -> None:
        # At start-up Redis may be down: `listen` creates the group once it answers.
        try:
            await super()._declare_consumer_group()
        except OUTAGE_ERRORS as exc:
            self.redis_unreachable(exc)

    async def _create_group(self, redis: Redis) -> None:
        try:
            await redis.xgroup_create(
                self.queue_name, self.consumer_group_name, id=self.consumer_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        else:
            logger.warning(
                "Created the job stream {} and its consumer group again (Redis lost them: "
                "restarted without persistence?)",
                self.queue_name,
            )

    # --- The consumer name ----------------------------------------------------------------

    async def _take_name(self, redis: Redis) -> None:
        """Lease a consumer name; a new one starts with the jobs it left pending."""
        if await self.consumer_lease.take_name(redis):
            self._use_leased_name()

    def _use_leased_name(self) -> None:
        self.consumer_name = self.consumer_lease.name
        self._own_pending_from = "-"

    async def keep_alive(self) -> None:
        """Renew the consumer name's lease and remove idle consumers (the heartbeat calls it)."""
        if not self.consumer_lease.held:
            return
        try:
            async with Redis(connection_pool=self.connection_pool) as redis:
                if await self.consumer_lease.renew(redis):
                    self._use_leased_name()
                await self.consumer_lease.remove_idle_consumers(redis)
        except OUTAGE_ERRORS as exc:
            self.redis_unreachable(exc)
        except ResponseError:  # the stream or group is gone: `listen` creates them again
            pass

    async def shutdown(self) -> None:
        if self.consumer_lease.held:
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    await self.consumer_lease.release(redis)
            except OUTAGE_ERRORS:
                pass  # the lease expires by itself
        await super().shutdown()

    # --- Reading jobs ---------------------------------------------------------------------

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack_and_delete() -> None:
            # Redis may be down when the job ends: keep trying while no other worker can have
            # taken the job over; after that, it runs again (jobs are idempotent).
            loop = asyncio.get_running_loop()
            give_up = loop.time() + self.idle_timeout / 1000
            wait = OUTAGE_FIRST_WAIT_SECONDS
            while True:
                try:
                    async with (
                        Redis(connection_pool=self.connection_pool) as redis,
                        redis.pipeline(transaction=True) as pipe,
                    ):
                        pipe.xack(queue_name, self.consumer_group_name, id)
                        pipe.xdel(queue_name, id)
                        await pipe.execute()
                    return
                except OUTAGE_ERRORS as exc:
                    self.redis_unreachable(exc)
                    if loop.time() + wait > give_up:
                        return
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, OUTAGE_MAX_WAIT_SECONDS)

        return ack_and_delete

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        wait = OUTAGE_FIRST_WAIT_SECONDS
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                stop_if_cancelled()
                try:
                    entries = await self._next_entries(redis)
                except OUTAGE_ERRORS as exc:
                    self.redis_unreachable(exc)
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, OUTAGE_MAX_WAIT_SECONDS)
                    continue
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self._create_group(redis)
                    continue
                wait = OUTAGE_FIRST_WAIT_SECONDS
                await self.redis_answers()
                unstarted = list(entries)
                try:
                    stop_if_cancelled()
                    while unstarted:
                        entry_id, fields = unstarted.pop(0)
                        yield AckableMessage(
                            data=fields[b"data"],
                            ack=self._ack_generator(entry_id.decode(), self.queue_name),
                        )
                finally:
                    # The worker stops: the jobs it read but did not start go back at once.
                    if unstarted:
                        await self._hand_back(redis, unstarted)

    async def _next_entries(self, redis: Redis) -> list[Entry]:
        if not self.consumer_lease.held or self._redis_down:
            await self._take_name(redis)
        if self._own_pending_from is not None:
            # Jobs this consumer name left pending (its process was killed): take them back,
            # once each (those taken are pending again while they run).
            own = await redis.xpending_range(
                self.queue_name,
                self.consumer_group_name,
                min=self._own_pending_from,
                max="+",
                count=self.unacknowledged_batch_size,
                consumername=self.consumer_name,
            )
            if not own:
                self._own_pending_from = None
            else:
                self._own_pending_from = "(" + cast("bytes", own[-1]["message_id"]).decode()
                claimed = await redis.xclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=0,
                    message_ids=[item["message_id"] for item in own],
                )
                return await self.dead_letters.below_max_deliveries(
                    redis, self.consumer_name, cast("list[Entry]", claimed)
                )
        reclaimed = await redis.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            count=self.unacknowledged_batch_size,
        )
        if entries := cast("Reclaimed", reclaimed)[1]:
            return await self.dead_letters.below_max_deliveries(redis, self.consumer_name, entries)
        fetched = await redis.xreadgroup(
            self.consumer_group_name,
            self.consumer_name,
            {self.queue_name: ">"},
            count=self.count,
            block=self.block,
        )
        return [entry for _, new in cast("Fetched", fetched) or [] for entry in new]

    async def _hand_back(self, redis: Redis, entries: list[Entry]) -> None:
        """Queue the entries again as new ones, and drop them from this consumer, atomically."""
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for entry_id, fields in entries:
                    pipe.xadd(self.queue_name, {b"data": fields[b"data"]})
                    pipe.xack(self.queue_name, self.consumer_group_name, entry_id)
                    pipe.xdel(self.queue_name, entry_id)
                await pipe.execute()
        except OUTAGE_ERRORS as exc:  # they stay pending: taken back at the next start
            self.redis_unreachable(exc)
