"""The Redis broker's Lua scripts, and the pure helpers that build their arguments and read
what Redis returns (script results; stream entries are read in ``entries``).

The key layout is in ``sse_hub.broker.redis.keyspace``. What the scripts guarantee:

1. A script runs atomically (Redis runs one script at a time, "Scripting with Lua",
   https://redis.io/docs/latest/develop/interact/programmability/eval-intro/): INCR, XADD
   and PUBLISH of a message in ``PUBLISH_SCRIPT`` are never interleaved with another
   instance's, so every instance receives the messages in id order.
2. All or nothing. Redis does not roll a script back when it fails half-way: writes made
   before a runtime error stay. ``PUBLISH_SCRIPT`` therefore reads and checks everything
   that could make a write fail (key types, the sequence's value, stream tops an id must
   exceed) before its first write, and after that runs only commands that cannot fail on
   checked keys. Its ``#!lua`` shebang (no ``allow-oom`` flag) makes Redis refuse the whole
   script up front when it is over ``maxmemory``, instead of failing its first write
   ("Script flags", https://redis.io/docs/latest/develop/interact/programmability/lua-api/).
   So an error reply means nothing of the group was applied. The one ambiguous case is
   the reply never arriving (connection lost, timeout): then the group may have been
   applied although its publishers were told 503.
3. Ids cross the script as strings formatted with ``'%d'``: Lua numbers are doubles.
4. Presence, ticket expiry and the history clock use Redis's own clock (``TIME``), so
   instances with skewed clocks agree.
5. Ids are never reused, also when Redis comes back without its data: a sequence that
   starts (``P:seq`` missing) starts above the highest id this instance has seen and above
   Redis's clock in microseconds. An earlier sequence could only reach that by handing out
   more than a million ids a second over its whole life. The start is kept as ``P:origin``:
   an instance that sees it change knows Redis lost its data (the broker then has its
   streams resume from history, where the loss shows as ``reset``), and a stream's first
   message after a loss lies above a marker entry at the origin. This assumes Redis's
   clock does not step back across a restart by more than the time the old sequence ran.
6. Streams that end (``Draft.final``): a final message's history entry carries the final
   mark (field ``f``) in the same ``XADD``, and every stream it ends gets the finished ttl
   instead of the history ttl, so mark and history are written and forgotten together.
   A stream whose newest entry holds the mark has ended. ``PUBLISH_SCRIPT`` takes its
   group's publish calls one by one, still before its first write: a call that names an
   ended channel (ended before, by an earlier call of the group, or by an earlier message
   of the call itself) is refused whole, with nothing of it written, and the others of
   the group go through.

7. Publisher ids (Mercure updates that came with their own id): the feed's index
   ``P:pubid:~mercure`` is a sorted set, member the id, score the sequence of the earliest
   update that used it (``ZADD NX``), written in the same call as the update, with the
   history's ttl and at most as many members as the history retains updates (the lowest
   scores dropped first). It can still name an update the history no longer retains (the
   history trims by count of all its updates; an instance of wire version 1 writes no
   index), so its reader (``history``) checks that the history still retains it.

Nothing here does I/O; the broker's parts register the scripts and call them. A part's own
small scripts live with it (``origin``, ``roster``, ``tickets``, ``history``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Slack between the expiry of a history and the checkpoint read for it (ms): covers the
# checkpoint step and a small backward step of Redis's clock.
CLOCK_MARGIN_MS = 2000

# Redis's clock in microseconds: where a sequence that starts again begins (invariant 5).
# Exact in a Lua number (a double) until the year 2255.
CLOCK_MICROSECONDS = """
local function clock_microseconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# The id that was current ttl ago, as an upper bound: the sequence of the earliest
# checkpoint written after (now - ttl + margin), or the current sequence when there is none.
# Any history that expired by now had its last publish before that checkpoint was written.
_DROPPED_BOUND = """
local function dropped_bound(clock_key, offset_ms, current)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local after = redis.call('XRANGE', clock_key, string.format('%d', now - offset_ms), '+', 'COUNT', 1)
  if after[1] then return after[1][2][2] end
  return current
end
"""

# KEYS: sequence, clock, origin, then the history stream of each channel of each message in
# order, then the publisher-id index when ARGV[8] is '1'. ARGV: id floor, trim operator,
# trim threshold, history ttl ms, clock keep ms, bound offset ms, finished ttl ms, '1' when
# the group indexes publisher ids else '0', then per publish call: its number of messages,
# then per message: payload after the id, its flag ('1' final, '0' not, 'i' and a publisher
# id: not final, index the id, invariant 7), its number of streams, its number of pub/sub
# channels, those channels. Returns per call the ids as strings or, for a call refused
# (invariant 6), the history key of the ended channel it named.
PUBLISH_SCRIPT = (
    "#!lua\n"
    + _DROPPED_BOUND
    + CLOCK_MICROSECONDS
    + """
-- Phase 1: read and check, no write: an error here leaves Redis as it was.
local seq = KEYS[1]
local stored = redis.call('GET', seq)
if stored and not string.match(stored, '^%d+$') then
  return redis.error_reply('ERR ' .. seq .. ' does not hold an id')
end
local origin_type = redis.call('TYPE', KEYS[3])['ok']
if origin_type ~= 'none' and origin_type ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' is not a hash')
end
local current = tonumber(stored or '0')
local start = math.max(current, tonumber(ARGV[1]))
-- A sequence that starts (a new Redis, or one that lost its data) starts above the clock
-- in microseconds: above every id an earlier sequence handed out (scripts.py, invariant 5).
if not stored then start = math.max(start, clock_microseconds()) end
local clock_type = redis.call('TYPE', KEYS[2])['ok']
if clock_type ~= 'none' and clock_type ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' is not a stream')
end
local index, last_stream = nil, #KEYS
if ARGV[8] == '1' then
  index, last_stream = KEYS[#KEYS], #KEYS - 1
  local index_type = redis.call('TYPE', index)['ok']
  if index_type ~= 'none' and index_type ~= 'zset' then
    return redis.error_reply('WRONGTYPE ' .. index .. ' is not a sorted set')
  end
end
local streams, fresh, ended = {}, {}, {}
for k = 4, last_stream do
  local key = KEYS[k]
  if not streams[key] then
    streams[key] = true
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'none' then
      fresh[key] = true
    elseif kind == 'stream' then
      local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
      if top[1] then
        start = math.max(start, tonumber(string.match(top[1][1], '^%d+')))
        -- A final message's entry holds field f (the final mark): the channel has ended.
        if top[1][2][3] == 'f' then ended[key] = true end
      end
    else
      return redis.error_reply('WRONGTYPE ' .. key .. ' is not a stream')
    end
  end
end
-- Each call goes through or is refused whole: refused when it names a channel that has
-- ended, before this group, by an earlier call of it, or by an earlier message of its own.
local calls, ending = {}, {}
local key, i = 4, 9
while i <= #ARGV do
  local call = {key = key, arg = i + 1, count = tonumber(ARGV[i])}
  local closes = {}
  i = i + 1
  for _ = 1, call.count do
    for s = key, key + tonumber(ARGV[i + 2]) - 1 do
      if not call.refused and (ended[KEYS[s]] or closes[KEYS[s]]) then call.refused = KEYS[s] end
      if ARGV[i + 1] == '1' then closes[KEYS[s]] = true end
    end
    key = key + tonumber(ARGV[i + 2])
    i = i + 4 + tonumber(ARGV[i + 3])
  end
  if not call.refused then
    for stream in pairs(closes) do ended[stream], ending[stream] = true, true end
  end
  calls[#calls + 1] = call
end
-- Phase 2: writes that cannot fail on the keys checked above.
local start_id = string.format('%d', start)
if start > current then redis.call('SET', seq, start_id) end
-- A sequence started here, not by ORIGIN_SCRIPT: the next check starts it once more.
if not stored then redis.call('HSET', KEYS[3], 'id', start_id, 'run', '') end
local origin_id = tonumber(redis.call('HGET', KEYS[3], 'id') or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- One checkpoint per second at most.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if not last[1] or tonumber(string.match(last[1][1], '^%d+')) <= now - 1000 then
  local keep = tonumber(ARGV[5])
  redis.call('XADD', KEYS[2], 'MINID', '~', string.format('%d', now - keep), '*', 's', start_id)
  redis.call('PEXPIRE', KEYS[2], keep)
end
local bound = nil
local written = {}
local out = {}
for c, call in ipairs(calls) do
  if call.refused then
    out[c] = call.refused
  else
    local ids = {}
    key, i = call.key, call.arg
    for _ = 1, call.count do
      local id = string.format('%d', redis.call('INCR', seq))
      local payload = '{"id":' .. id .. ARGV[i]
      local topics = tonumber(ARGV[i + 3])
      for _ = 1, tonumber(ARGV[i + 2]) do
        local stream = KEYS[key]
        written[stream] = true
        if fresh[stream] then
          fresh[stream] = nil
          bound = bound or dropped_bound(KEYS[2], tonumber(ARGV[6]), start_id)
          -- Ids up to the origin are covered by the origin itself (invariant 5).
          if tonumber(bound) > origin_id then redis.call('XADD', stream, bound .. '-0', 'd', '1') end
        end
        if ARGV[i + 1] == '1' then
          redis.call('XADD', stream, 'MAXLEN', ARGV[2], ARGV[3], id .. '-0', 'm', payload, 'f', '1')
        else
          redis.call('XADD', stream, 'MAXLEN', ARGV[2], ARGV[3], id .. '-0', 'm', payload)
        end
        key = key + 1
      end
      -- 'i' (105) and a publisher id: the earliest update with the id wins (invariant 7).
      if string.byte(ARGV[i + 1]) == 105 then redis.call('ZADD', index, 'NX', id, string.sub(ARGV[i + 1], 2)) end
      for n = i + 4, i + 3 + topics do
        redis.call('PUBLISH', ARGV[n], payload)
      end
      ids[#ids + 1] = id
      i = i + 4 + topics
    end
    out[c] = ids
  end
end
-- A channel that ended now is forgotten, mark and history, after the finished ttl.
for stream in pairs(written) do
  redis.call('PEXPIRE', stream, ending[stream] and ARGV[7] or ARGV[4])
end
if index then
  -- At most as many ids as the history retains updates, the oldest dropped first.
  local extra = redis.call('ZCARD', index) - (ARGV[2] == '=' and 0 or tonumber(ARGV[3]) - 1)
  if extra > 0 then redis.call('ZREMRANGEBYRANK', index, 0, extra - 1) end
  redis.call('PEXPIRE', index, ARGV[4])
end
return out
"""
)

# KEYS: sequence, clock, origin, then the streams to read. ARGV: exclusive start ('(' id
# '-0'), window, bound offset ms, keep (0: all). Returns the sequence, the dropped-history
# bound ('0' when every stream exists), the sequence's origin and, for each stream, how
# many entries it has after the start within the window (its newest `window`), with the
# oldest `keep` of them, newest first: a replay is read a page at a time, so only a page
# crosses to the hub. With no sequence at all (a new Redis, or one that lost its data),
# the origin is the clock in microseconds: any id may name a lost message.
HISTORY_SCRIPT = (
    "#!lua flags=no-writes\n"
    + _DROPPED_BOUND
    + CLOCK_MICROSECONDS
    + """
local stored = redis.call('GET', KEYS[1])
local current = stored or '0'
local out = {current, '0', redis.call('HGET', KEYS[3], 'id') or '0'}
local missing = false
for k = 4, #KEYS do
  local entries = redis.call('XREVRANGE', KEYS[k], '+', ARGV[1], 'COUNT', ARGV[2])
  if not entries[1] and redis.call('EXISTS', KEYS[k]) == 0 then missing = true end
  local total, keep = #entries, tonumber(ARGV[4])
  if keep > 0 and total > keep then
    local oldest = {}
    for i = total - keep + 1, total do oldest[#oldest + 1] = entries[i] end
    entries = oldest
  end
  out[#out + 1] = {total, entries}
end
if not stored then
  out[3] = string.format('%d', clock_microseconds())
elseif missing then
  out[2] = dropped_bound(KEYS[2], tonumber(ARGV[3]), current)
end
return out
"""
)

# The live instances (presence not expired by Redis's clock) as ``live``; KEYS[1] the set.
LIVE_INSTANCES = """
local clock = redis.call('TIME')
local now = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

# KEYS: instances, this instance's summary, its client set. ARGV: instance id, summary, ttl
# ms, summary key prefix, head length, the pub/sub channel of wire version 0. Returns how
# many connections listen on that channel, then every live instance with the head of its
# summary (where the wire version is announced, ``keyspace``), flat: id, head, id, head...
PRESENCE_SCRIPT = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local heads = {redis.call('PUBSUB', 'NUMSUB', ARGV[6])[2]}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')) do
  heads[#heads + 1] = id
  heads[#heads + 1] = redis.call('GETRANGE', ARGV[4] .. id, 0, tonumber(ARGV[5]) - 1)
end
return heads
"""

# KEYS: instances. ARGV: summary key prefix. Missing summaries come back as nil.
SUMMARIES_SCRIPT = (
    LIVE_INSTANCES
    + """
local summaries = {}
for i, id in ipairs(live) do
  summaries[i] = redis.call('GET', ARGV[1] .. id)
end
return summaries
"""
)

# KEYS: instances. ARGV: client set key prefix, client id. Returns the id of the live
# instance the client is connected to, or nil.
LOCATE_SCRIPT = (
    LIVE_INSTANCES
    + """
for _, id in ipairs(live) do
  if redis.call('SISMEMBER', ARGV[1] .. id, ARGV[2]) == 1 then
    return id
  end
end
return false
"""
)

# The same script for Redis Cluster: shard channels, which must hash to the slot of the
# script's keys (every name is under one hash tag there, see ``Keyspace.for_cluster``).
SHARD_CHANNEL_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH', ", "redis.call('SPUBLISH', ")
assert SHARD_CHANNEL_PUBLISH_SCRIPT.count("'SPUBLISH'") == 1


class InstanceSummary(BaseModel):
    """An instance's summary as read back from Redis (outside this process's control)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance: str
    started_at: str
    total_clients: Annotated[int, Field(ge=0)]
    channels: dict[str, Annotated[int, Field(ge=0)]]


def describe(exc: Exception) -> str:
    """A validation error without the input (payloads are never logged above DEBUG)."""
    if not isinstance(exc, ValidationError):
        return f"missing field {exc}"
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(f"{'.'.join(map(str, error['loc'])) or '(payload)'}: {error['msg']}" for error in errors[:3])
