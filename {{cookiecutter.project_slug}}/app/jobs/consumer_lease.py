"""The lease on a worker's consumer name, so that names are stable and never shared.

A worker's consumer name is `<WORKER_NAME>-<n>`, the lowest index whose lease
(`<stream>:consumer:<name>`, renewed by the worker's heartbeat) is free. The lease of a process
of this host that no longer exists is free at once, so a restarted worker gets its old name
back (and, at start, takes back the jobs it left pending). Two live workers never share a
name. Consumers with no pending job and no lease are removed from the group
(`remove_idle_consumers`); a stopping worker releases its lease.
"""

import os
import secrets
import socket
import time
from pathlib import Path

from loguru import logger
from redis.asyncio import Redis

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


class ConsumerLease:
    """This worker's consumer name and its lease in Redis. Redis errors reach the caller."""

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        worker_name: str,
        lease_seconds: float,
        name: str,
    ) -> None:
        self.stream = stream
        self.group = group
        self.worker_name = worker_name
        self.lease_seconds = lease_seconds
        # The consumer name: the broker's own until a lease is taken.
        self.name = name
        self.held = False
        self._token = " ".join(
            (socket.gethostname(), str(os.getpid()), PROCESS_STARTED, secrets.token_hex(4))
        )

    def key(self, consumer: str) -> str:
        return f"{self.stream}:consumer:{consumer}"

    async def take_name(self, redis: Redis) -> bool:
        """Lease the lowest free `<worker_name>-<n>` and use it as the consumer name.

        True if the name is new to this worker (its lease was lost or never held).
        """
        index = 0
        while True:
            name = f"{self.worker_name}-{index}"
            if await self._lease(redis, name):
                is_new = name != self.name or not self.held
                if is_new:
                    self.name = name
                    logger.info("Worker consumer name: {}", name)
                self.held = True
                return is_new
            index += 1

    async def renew(self, redis: Redis) -> bool:
        """Renew the lease (the heartbeat calls it); True if another name had to be taken."""
        if await self._lease(redis, self.name):
            return False
        logger.warning("Consumer name {} is held by another worker now; taking another", self.name)
        self.held = False
        return await self.take_name(redis)

    async def release(self, redis: Redis) -> None:
        """Free the name for the next worker (else the lease expires by itself)."""
        self.held = False
        await redis.eval(RELEASE, 1, self.key(self.name), self._token)

    async def remove_idle_consumers(self, redis: Redis) -> None:
        consumers = await redis.xinfo_consumers(self.stream, self.group)
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name == self.name or consumer["pending"]:
                continue
            keys = (self.stream, self.key(name))
            await redis.eval(REMOVE_IF_IDLE, 2, *keys, self.group, name)

    async def _lease(self, redis: Redis, name: str) -> bool:
        key, ttl = self.key(name), int(self.lease_seconds * 1000)
        holder = await redis.eval(LEASE, 1, key, self._token, ttl, "")
        if holder is None:
            return True
        holder = holder.decode() if isinstance(holder, bytes) else str(holder)
        if not holder_is_gone(holder):
            return False
        return await redis.eval(LEASE, 1, key, self._token, ttl, holder) is None
