"""Presence across the cluster: the record of each local client in Redis, and the reads
that answer ``/channels/{name}`` and ``/clients/{id}`` for every live instance.

The keys are ``P:roster:{instance}`` (a hash of records) and ``P:members:{instance}``
(``{channel}\\n{client id}``, read by range), described in ``keyspace``.

Invariants:

1. Writes ride on the directory's own (``directory``): a client's record and members go
   out in the batch that adds it to the client set, and leave in the batch that removes
   it; a rewrite of the directory rewrites them whole. Nothing here awaits on the hub's
   connect path. The Mercure subscribers among them (``mercure_roster``) go in the same
   batches and expire with them.
2. Bounded refresh: every presence refresh rewrites at most ``MAX_REFRESHED_RECORDS``
   records (the next ones in turn) and renews both keys' TTL. So a record's counters
   (``last_activity``, ``messages_sent``, ``bytes_sent``) are at most
   ``REFRESH_SECONDS * ceil(clients / MAX_REFRESHED_RECORDS)`` old (2 s up to 1000
   clients on the instance); ``ip``, ``channels`` and ``connected_at`` never change. The
   counts and who is on a channel are as fresh as the directory's last write (it writes
   as changes come, within one Redis round trip).
3. Bounded reads: one script call each, over the live instances only (an instance whose
   presence expired is gone from every answer); a channel page costs at most
   ``limit + 1`` members per instance and ``limit + 1`` records, and ``limit`` is at most
   ``MAX_PAGE``.
4. Order: client ids compare byte by byte, in ``ZRANGEBYLEX`` and in the script's merge
   (Lua's ``<`` on strings follows the server's locale, so the script does not use it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.mercure_roster import MercureRoster
from sse_hub.broker.redis.scripts import LIVE_INSTANCES, describe
from sse_hub.messages.contract import ChannelPresence, ClientRecord, ConnectedClient

logger = logging.getLogger(__name__)

MAX_REFRESHED_RECORDS = 1000
MAX_PAGE = 1000

# KEYS: instances. ARGV: members prefix, roster prefix, channel, after ('' for none), limit.
# Returns {id, count, id, count...} for every live instance, then the page: {client id,
# instance, record or nil, ...}, at most limit + 1 (one more tells that a next page exists).
CHANNEL_SCRIPT = (
    "#!lua flags=no-writes\n"
    + LIVE_INSTANCES
    + """
local function before(a, b)
  if a[1] == b[1] then return a[2] < b[2] end
  for i = 1, math.min(#a[1], #b[1]) do
    local x, y = string.byte(a[1], i), string.byte(b[1], i)
    if x ~= y then return x < y end
  end
  return #a[1] < #b[1]
end
local low = ARGV[3] .. '\\n'
local high = '[' .. low .. '\\255'
local first = '[' .. low
if ARGV[4] ~= '' then first = '(' .. low .. ARGV[4] end
local limit = tonumber(ARGV[5])
local counts, found = {}, {}
for _, id in ipairs(live) do
  local key = ARGV[1] .. id
  counts[#counts + 1] = id
  counts[#counts + 1] = redis.call('ZLEXCOUNT', key, '[' .. low, high)
  if limit > 0 then
    for _, member in ipairs(redis.call('ZRANGEBYLEX', key, first, high, 'LIMIT', 0, limit + 1)) do
      found[#found + 1] = {string.sub(member, #low + 1), id}
    end
  end
end
table.sort(found, before)
local page = {}
for n = 1, math.min(#found, limit + 1) do
  local client, instance = found[n][1], found[n][2]
  page[#page + 1] = client
  page[#page + 1] = instance
  page[#page + 1] = redis.call('HGET', ARGV[2] .. instance, client)
end
return {counts, page}
"""
)

# KEYS: instances. ARGV: roster prefix, client id. Returns {instance, record} or nil.
FIND_SCRIPT = (
    "#!lua flags=no-writes\n"
    + LIVE_INSTANCES
    + """
for _, id in ipairs(live) do
  local record = redis.call('HGET', ARGV[1] .. id, ARGV[2])
  if record then return {id, record} end
end
return false
"""
)


class StoredRecord(BaseModel):
    """A client record as read back from Redis (outside this process's control)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ip: str
    channels: tuple[str, ...]
    connected_at: float
    last_activity: float
    messages_sent: Annotated[int, Field(ge=0)]
    bytes_sent: Annotated[int, Field(ge=0)]

    def record(self, client_id: str, instance: str) -> ClientRecord:
        return ClientRecord(
            client_id,
            instance,
            self.ip,
            self.channels,
            self.connected_at,
            self.last_activity,
            self.messages_sent,
            self.bytes_sent,
        )


def record_json(client: ConnectedClient) -> str:
    return json.dumps(
        {
            "ip": client.ip,
            "channels": list(client.channels),
            "connected_at": client.connected_at,
            "last_activity": client.last_activity,
            "messages_sent": client.messages_sent,
            "bytes_sent": client.bytes_sent,
        },
        separators=(",", ":"),
    )


def member(channel: str, client_id: str) -> str:
    return f"{channel}\n{client_id}"


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _read(client_id: str, instance: str, raw: bytes | str | None) -> ClientRecord | None:
    if raw is None:
        return None
    try:
        return StoredRecord.model_validate_json(raw).record(client_id, instance)
    except ValidationError as exc:
        logger.warning("skipping a malformed client record in Redis: %s", describe(exc))
        return None


class Roster:
    """This instance's client records, and the cluster's presence reads (module docstring)."""

    def __init__(self, redis: Redis, keyspace: Keyspace, instance_id: str) -> None:
        self._keys = keyspace
        self._records_key = f"{keyspace.roster_prefix}{instance_id}"
        self._members_key = f"{keyspace.members_prefix}{instance_id}"
        self._channel_script = redis.register_script(CHANNEL_SCRIPT)
        self._find_script = redis.register_script(FIND_SCRIPT)
        #: The Mercure subscribers among the clients, written and expiring with them.
        self.mercure = MercureRoster(keyspace, instance_id, self._channel_script, self._find_script)
        #: The live view of each local client that has one (read for its record).
        self.views: dict[str, ConnectedClient] = {}
        #: The channels of clients that left since the last write (their members to remove).
        self.departed: dict[str, tuple[str, ...]] = {}
        self._turn = 0

    def connected(self, client_id: str, client: ConnectedClient | None) -> None:
        if client is not None:
            self.views[client_id] = client
        self.departed.pop(client_id, None)

    def disconnected(self, client_id: str, pending: bool) -> None:
        """``pending``: the directory keeps the change for its next write (not stale)."""
        client = self.views.pop(client_id, None)
        if client is not None and pending:
            self.departed[client_id] = client.channels
        self.mercure.set(client_id, None)

    def forget_departures(self) -> None:
        """The directory will be rewritten whole: nothing to remove one by one."""
        self.departed.clear()
        self.mercure.changed.clear()

    def rewrite(self, pipe: Pipeline, ttl_ms: int) -> None:
        """Replace both keys with every local client's record (in the directory's transaction)."""
        self.departed.clear()
        pipe.delete(self._records_key, self._members_key)
        self._add(pipe, list(self.views))
        self.mercure.rewrite(pipe)
        self._expire(pipe, ttl_ms)

    def write(self, pipe: Pipeline, added: Sequence[str], removed: Sequence[str], ttl_ms: int) -> None:
        """The records of ``added`` in, those of ``removed`` out (one pipeline)."""
        self._add(pipe, added)
        gone = {client_id: self.departed.pop(client_id, ()) for client_id in removed}
        if gone:
            pipe.hdel(self._records_key, *gone)
            members = [member(channel, client_id) for client_id, channels in gone.items() for channel in channels]
            if members:
                pipe.zrem(self._members_key, *members)
        self.mercure.write(pipe)
        self._expire(pipe, ttl_ms)

    async def refresh(self, redis: Redis, ttl_ms: int) -> None:
        """Rewrite the next ``MAX_REFRESHED_RECORDS`` records and renew the TTLs (invariant 2)."""
        ids = list(self.views)
        start = self._turn if self._turn < len(ids) else 0
        self._turn = start + MAX_REFRESHED_RECORDS
        async with redis.pipeline(transaction=False) as pipe:
            self._add(pipe, ids[start : self._turn], members=False)
            self._expire(pipe, ttl_ms)
            await pipe.execute()

    def _add(self, pipe: Pipeline, client_ids: Sequence[str], members: bool = True) -> None:
        """Write the records of ``client_ids`` (and their channel members, unless
        ``members`` is False: they never change)."""
        views = self.views
        present = [client_id for client_id in client_ids if client_id in views]
        for start in range(0, len(present), MAX_REFRESHED_RECORDS):
            chunk = present[start : start + MAX_REFRESHED_RECORDS]
            pipe.hset(self._records_key, mapping={client_id: record_json(views[client_id]) for client_id in chunk})
            scored = {member(channel, client_id): 0 for client_id in chunk for channel in views[client_id].channels}
            if members and scored:
                pipe.zadd(self._members_key, scored)

    def _expire(self, pipe: Pipeline, ttl_ms: int) -> None:
        pipe.pexpire(self._records_key, ttl_ms)
        pipe.pexpire(self._members_key, ttl_ms)
        self.mercure.expire(pipe, ttl_ms)

    # -- reads: raise RedisError/OSError ----------------------------------------------

    async def channel(self, channel: str, after: str | None, limit: int) -> ChannelPresence:
        limit = min(limit, MAX_PAGE)
        keys = self._keys
        counts, page = await self._channel_script(
            keys=[keys.instances],
            args=[keys.members_prefix, keys.roster_prefix, channel, after or "", limit],
        )
        instances = {_text(raw): int(count) for raw, count in zip(counts[::2], counts[1::2], strict=True)}
        entries = list(zip(page[::3], page[1::3], page[2::3], strict=True))
        next_after = _text(entries[limit - 1][0]) if len(entries) > limit else None
        clients = [_read(_text(raw_id), _text(raw_instance), raw) for raw_id, raw_instance, raw in entries[:limit]]
        return ChannelPresence(
            dict(sorted(instances.items())), [client for client in clients if client is not None], next_after
        )

    async def find(self, client_id: str) -> ClientRecord | None:
        found = await self._find_script(keys=[self._keys.instances], args=[self._keys.roster_prefix, client_id])
        if not found:
            return None
        raw_instance, raw = found
        return _read(client_id, _text(raw_instance), raw)
