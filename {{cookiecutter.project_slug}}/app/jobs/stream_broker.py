"""taskiq-redis's Redis-stream broker, made to survive Redis outages, killed workers and poison
jobs.

- Outages: no Redis error leaves `listen` (taskiq would restart the worker process for it).
  The worker logs the outage once, waits (up to `OUTAGE_MAX_WAIT_SECONDS` between tries) and
  logs the recovery once. A Redis that comes back empty has lost the stream and the consumer
  group: the first read that says so (`NOGROUP`) creates them again.
- Consumer names are stable: `<WORKER_NAME>-<n>`, the lowest index whose lease
  (`<stream>:consumer:<name>`, renewed by the worker's heartbeat) is free. The lease of a
  process of this host that no longer exists is free at once, so a restarted worker gets its
  old name back and, at start, takes back the jobs it left pending (its own pending entries,
  whatever their idle time). Two live workers never share a name.
- Jobs left pending by a worker that died elsewhere are taken over once they have been pending
  for `idle_timeout` (XAUTOCLAIM, atomic: one taker per job). Every read first looks for them.
- A job delivered more than `max_deliveries` times (it stopped its worker each time) goes to the
  dead-letter stream `<stream>:dead` instead of running again; `python -m app.cli jobs dead`
  lists them, `jobs retry ID` queues one again.
- A job is acknowledged and deleted in one transaction, so the stream holds only jobs not yet
  done. Jobs read but not yet started when the worker stops go back to the stream at once.
- Consumers with no pending job and no lease are removed from the group (`remove_idle_consumers`).

The read is a blocking XREADGROUP, which a stop cancels. redis-py 8.1 at times swallows a
cancellation that arrives during a command (the command then returns, and the task stays marked
as cancelling), so the loop checks for a pending cancellation around every read, in whichever
task runs it: taskiq reads each message in a new task.
"""

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from app.jobs.logged import loggable_arguments

Entry = tuple[bytes, dict[bytes, bytes]]
# XREADGROUP answers [[stream, [entry, ...]]], or nothing.
Fetched = list[tuple[bytes, list[Entry]]] | None
# XAUTOCLAIM answers [next start, [entry, ...], [deleted ids]].
Reclaimed = tuple[bytes, list[Entry], list[bytes]]

# Errors that mean "Redis is not answering" (down, restarting, failed over to a replica).
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
OUTAGE_FIRST_WAIT_SECONDS = 0.25
# The longest wait between two tries while Redis is down: jobs resume this soon after it answers.
OUTAGE_MAX_WAIT_SECONDS = 2.0
# Dead letters kept (oldest dropped first).
DEAD_LETTERS_KEPT = 10_000
# When this process started: with the host and the pid, it names a lease's holder.
PROCESS_STARTED = str(time.time_ns())

# Take the lease if it is free, ours, or held by ARGV[3] (a holder known to be dead); else
# answer the holder.
LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] or holder == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return holder
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Delete the consumer only if nobody holds its name and it has no pending job, atomically: a
# worker that has just taken the name holds the lease before it reads.
REMOVE_IF_IDLE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""


def holder_is_gone(holder: str) -> bool:
    """Whether the lease holder was a process of this host that no longer runs."""
    host, pid, started = [*holder.split(" "), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # a pid seen again: an earlier process, unless it is this one
        return started != PROCESS_STARTED
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    # A killed process whose parent has not collected it yet is a zombie: dead all the same.
    # (/proc is in memory: reading it does not block.)
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return status.rpartition(")")[2].split()[:1] == ["Z"]


def stop_if_cancelled() -> None:
    """Raise the cancellation a command swallowed, if the running task has one pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class DurableStreamBroker(RedisStreamBroker):
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
        self.worker_name = worker_name
        self.max_deliveries = max_deliveries
        self.lease_seconds = lease_seconds
        self.dead_letter_stream = f"{self.queue_name}:dead"
        self._token = " ".join(
            (socket.gethostname(), str(os.getpid()), PROCESS_STARTED, secrets.token_hex(4))
        )
        self._leased = False
        # Where the next look at this name's own pending jobs starts; None once all were taken.
        self._own_pending_from: str | None = "-"
        self._redis_down = False

    @property
    def leased(self) -> bool:
        """Whether this worker holds the lease on its consumer name."""
        return self._leased

    def lease_key(self, consumer: str) -> str:
        return f"{self.queue_name}:consumer:{consumer}"

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

    # --- The consumer name and its lease --------------------------------------------------

    async def _take_name(self, redis: Redis) -> None:
        """Lease the lowest free `<worker_name>-<n>` and use it as the consumer name."""
        index = 0
        while True:
            name = f"{self.worker_name}-{index}"
            if await self._lease(redis, name):
                if name != self.consumer_name or not self._leased:
                    self.consumer_name = name
                    self._own_pending_from = "-"
                    logger.info("Worker consumer name: {}", name)
                self._leased = True
                return
            index += 1

    async def _lease(self, redis: Redis, name: str) -> bool:
        key, ttl = self.lease_key(name), int(self.lease_seconds * 1000)
        holder = await redis.eval(LEASE, 1, key, self._token, ttl, "")
        if holder is None:
            return True
        holder = holder.decode() if isinstance(holder, bytes) else str(holder)
        if not holder_is_gone(holder):
            return False
        return await redis.eval(LEASE, 1, key, self._token, ttl, holder) is None

    async def keep_alive(self) -> None:
        """Renew the consumer name's lease and remove idle consumers (the heartbeat calls it)."""
        if not self._leased:
            return
        try:
            async with Redis(connection_pool=self.connection_pool) as redis:
                if not await self._lease(redis, self.consumer_name):
                    logger.warning(
                        "Consumer name {} is held by another worker now; taking another",
                        self.consumer_name,
                    )
                    self._leased = False
                    await self._take_name(redis)
                await self.remove_idle_consumers(redis)
        except OUTAGE_ERRORS as exc:
            self.redis_unreachable(exc)
        except ResponseError:  # the stream or group is gone: `listen` creates them again
            pass

    async def remove_idle_consumers(self, redis: Redis) -> None:
        consumers = await redis.xinfo_consumers(self.queue_name, self.consumer_group_name)
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name == self.consumer_name or consumer["pending"]:
                continue
            keys = (self.queue_name, self.lease_key(name))
            await redis.eval(REMOVE_IF_IDLE, 2, *keys, self.consumer_group_name, name)

    async def shutdown(self) -> None:
        if self._leased:
            self._leased = False
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    await redis.eval(RELEASE, 1, self.lease_key(self.consumer_name), self._token)
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
        if not self._leased or self._redis_down:
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
                return await self._below_max_deliveries(redis, cast("list[Entry]", claimed))
        reclaimed = await redis.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            count=self.unacknowledged_batch_size,
        )
        if entries := cast("Reclaimed", reclaimed)[1]:
            return await self._below_max_deliveries(redis, entries)
        fetched = await redis.xreadgroup(
            self.consumer_group_name,
            self.consumer_name,
            {self.queue_name: ">"},
            count=self.count,
            block=self.block,
        )
        return [entry for _, new in cast("Fetched", fetched) or [] for entry in new]

    async def _below_max_deliveries(self, redis: Redis, claimed: list[Entry]) -> list[Entry]:
        """The claimed entries that may run again; the others go to the dead letters."""
        # Deleted entries come back without fields; ids sort by their two numbers.
        claimed = sorted(
            ((entry_id, fields) for entry_id, fields in claimed if fields),
            key=lambda entry: tuple(int(part) for part in entry[0].split(b"-")),
        )
        if not claimed:
            return []
        pending = await redis.xpending_range(
            self.queue_name,
            self.consumer_group_name,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed),
            consumername=self.consumer_name,
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
            pipe.xack(self.queue_name, self.consumer_group_name, entry_id)
            pipe.xdel(self.queue_name, entry_id)
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

    # --- Dead letters ---------------------------------------------------------------------

    def describe(self, data: bytes) -> tuple[str, str, dict[str, Any]]:
        """A job's task name, id and arguments as they may be logged (secrets masked)."""
        try:
            message = self.formatter.loads(data)
        except ValueError:
            return "?", "?", {}
        return message.task_name, message.task_id, loggable_arguments(message)

    async def dead_letters(self) -> list[tuple[str, int, bytes]]:
        """The dead letters, oldest first: (id, deliveries, the job's message)."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            entries = cast("list[Entry]", await redis.xrange(self.dead_letter_stream))
        return [
            (entry_id.decode(), int(fields[b"deliveries"]), fields[b"data"])
            for entry_id, fields in entries
        ]

    async def retry_dead_letter(self, dead_id: str) -> bool:
        """Queue a dead letter's job again; False if there is no such dead letter."""
        async with Redis(connection_pool=self.connection_pool) as redis:
            found = cast(
                "list[Entry]", await redis.xrange(self.dead_letter_stream, min=dead_id, max=dead_id)
            )
            if not found:
                return False
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(self.queue_name, {b"data": found[0][1][b"data"]})
                pipe.xdel(self.dead_letter_stream, dead_id)
                await pipe.execute()
        return True
