"""Where the id sequence began, and telling when the Redis that holds it lost writes.

``P:origin`` (``keyspace``) records the sequence's origin (``id``: every id handed out
since is above it), the run id of the Redis server that held it then (``run``) and that
server's clock at the time (``at``, ms). Every instance checks it when it connects and
after every reconnect (``OriginCheck.check``). When another server holds the sequence
now, the script decides, atomically, so that the first instance to look decides for all:

1. **Keep it** when that server keeps every acknowledged write across a restart (an
   append-only file synced on every write, and not a replica promoted since it started),
   or when it was already running before the origin was recorded and is no promoted
   replica: the keys came to it whole, by a slot migration (Redis Cluster).
2. **Start again** otherwise (it restarted, or a replica took over): the sequence starts
   above the highest id this instance has seen and above the clock in microseconds
   (``scripts``, invariant 5), and the instances that see the origin move end their
   streams, which resume from history and are told (``reset``) what may be lost.
3. **Adopt** a sequence with no origin (kept by a release before origins) as it is, with
   origin 0, unless this instance knew an origin already: then its hash was lost with the
   data and an earlier release numbered since, so the sequence starts again.

A sequence missing altogether starts again whatever the server (there is nothing to keep).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.scripts import CLOCK_MICROSECONDS

# KEYS: sequence, origin. ARGV: the server's run id, the id floor, the server's kind
# ('durable', 'promoted' or 'other'), the latest the server can have started (ms, its
# clock), the origin this instance knew ('' for none). Returns the origin id.
ORIGIN_SCRIPT = (
    CLOCK_MICROSECONDS
    + """
local origin, run, at = unpack(redis.call('HMGET', KEYS[2], 'id', 'run', 'at'))
local stored = redis.call('GET', KEYS[1])
local now = math.floor(clock_microseconds() / 1000)
local function record(id)
  redis.call('HSET', KEYS[2], 'id', id, 'run', ARGV[1], 'at', string.format('%d', now))
  return id
end
if stored and origin then
  if run == ARGV[1] then return origin end
  if ARGV[3] == 'durable' then return record(origin) end
  if ARGV[3] == 'other' and at and tonumber(ARGV[4]) < tonumber(at) then return record(origin) end
elseif stored and ARGV[5] == '' then
  return record('0')
end
local start = string.format('%d', math.max(tonumber(stored or '0'), tonumber(ARGV[2]), clock_microseconds()))
redis.call('SET', KEYS[1], start)
return record(start)
"""
)


@dataclass(frozen=True, slots=True)
class Server:
    """What the origin check needs to know of the Redis server it talks to."""

    run_id: str
    kind: str  # 'durable', 'promoted' or 'other' (ORIGIN_SCRIPT)
    started_by_ms: int  # the latest it can have started, on its own clock


async def read_server(redis: Redis) -> Server:
    """``INFO`` and ``CONFIG GET appendfsync``; a server that refuses ``CONFIG GET`` (some
    managed services) is taken to lose writes on a restart. Raises RedisError/OSError."""
    server = await redis.info("server")
    replication = await redis.info("replication")
    # A replica promoted at some point keeps its old master's replication id here: writes
    # that master acknowledged may never have reached it ("Replication", PSYNC).
    promoted = set(str(replication.get("master_replid2", "0"))) - {"0"} != set()
    kind = "promoted" if promoted else "durable" if await _syncs_every_write(redis) else "other"
    # uptime_in_seconds is rounded down, so this bound is never earlier than the start.
    started_by_ms = int(server["server_time_usec"]) // 1000 - int(server["uptime_in_seconds"]) * 1000
    return Server(str(server["run_id"]), kind, started_by_ms)


async def _syncs_every_write(redis: Redis) -> bool:
    if (await redis.info("persistence")).get("aof_enabled") != 1:
        return False
    try:
        return (await redis.config_get("appendfsync")).get("appendfsync") == "always"
    except ResponseError:
        return False


class OriginCheck:
    def __init__(self, redis: Redis, keyspace: Keyspace) -> None:
        self._redis = redis
        self._keys = keyspace
        self._script = redis.register_script(ORIGIN_SCRIPT)

    async def check(self, floor: int, known: str | None) -> str:
        """The sequence's origin after the check (module docstring); ``known`` is the one
        this instance saw last (None: it never looked). Raises RedisError/OSError."""
        server = await read_server(self._redis)
        origin = await self._script(
            keys=[self._keys.seq, self._keys.origin],
            args=[server.run_id, floor, server.kind, server.started_by_ms, known or ""],
        )
        return origin.decode() if isinstance(origin, bytes) else str(origin)
