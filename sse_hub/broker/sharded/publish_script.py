"""The sharded broker's publish script (``publish`` builds its calls, ``keys`` names its
keys): what one call on one slot writes, all or nothing.

It numbers each part in each of its channels (meta ``s``, a new epoch when the counter
starts again), stores it in their history streams, marks final parts, keeps the
partition's order, ``SPUBLISH``es it, and for a Mercure update with its own id writes the
feed's publisher-id index: ``ZADD NX`` (the earliest retained update with the id wins),
trimmed by rank to ``history.size``, with the history's TTL, dropped when the feed's
counter starts a new epoch (``keys``; ``history.find_publisher_position`` reads it).
"""

from __future__ import annotations

# Meta hashes outlive their stream by a day, so a counter is still there when its
# history expired, and a resume is told "expired", not "epoch changed".
META_EXTRA_TTL_SECONDS = 86_400
# How the script refuses a part on an ended channel: an error reply, then the JSON name.
FINISHED = "FINISHED "

# KEYS: per part, per channel: meta, stream, then the publisher-id index of its first
# channel when the part has a publisher id to index; last, the partition's order (``keys``).
# ARGV: history size (0: no stream), history ttl s, meta ttl s, finished ttl s, number of
# parts; then per part: channel count, final (1 or 0), the prior JSON (`,"prior":[...]` or
# empty), the payload tail (the draft's JSON fields after `{`), the publisher id to index
# (a Mercure update's own id; empty: none), then per channel its JSON name and its shard
# channel.
# Returns per part, per channel: seq, epoch; or the error `FINISHED <JSON name>` when a
# part names a channel that has ended (marked, or made final by an earlier part of the
# call), and then nothing of the call was written.
PUBLISH_SCRIPT = """#!lua
-- Phase 1: check the types and the final marks; an error here leaves Redis as it was.
local ended, a, k = {}, 6, 1
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[a])
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    local meta_type = redis.call('TYPE', meta)['ok']
    local stream_type = redis.call('TYPE', stream)['ok']
    if (meta_type ~= 'none' and meta_type ~= 'hash') or (stream_type ~= 'none' and stream_type ~= 'stream') then
      return redis.error_reply('WRONGTYPE ' .. meta .. ' or ' .. stream .. ' has the wrong type')
    end
    if ended[meta] or redis.call('HEXISTS', meta, 'f') == 1 then
      return redis.error_reply('FINISHED ' .. ARGV[a + 5 + 2 * j])
    end
  end
  if ARGV[a + 4] ~= '' then
    local index_type = redis.call('TYPE', KEYS[k + 2 * n])['ok']
    if index_type ~= 'none' and index_type ~= 'zset' then
      return redis.error_reply('WRONGTYPE ' .. KEYS[k + 2 * n] .. ' has the wrong type')
    end
  end
  if ARGV[a + 1] == '1' then
    for j = 0, n - 1 do
      ended[KEYS[k + 2 * j]] = true
    end
  end
  k = k + 2 * n + (ARGV[a + 4] ~= '' and 1 or 0)
  a = a + 5 + 2 * n
end
local size, ttl, meta_ttl, finished_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local t = redis.call('TIME')
-- The partition's order: per part, Redis TIME in microseconds, raised past the last one the
-- partition gave, so strictly increasing in call order and close to the clock across
-- partitions. Written first (a wrong type leaves Redis as it was); it outlives every stream
-- of the partition. %d: a Lua number would be written as %.14g, losing digits.
local parts = tonumber(ARGV[5])
local last = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
local order = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), last + 1) - 1
local keep_order = math.max(tonumber(meta_ttl), tonumber(finished_ttl))
redis.call('SET', KEYS[#KEYS], string.format('%d', order + parts), 'EX', keep_order)
local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fresh
local function new_epoch()
  if not fresh then
    -- Redis TIME in microseconds, mod 36^4, as 4 base36 digits.
    local n = ((tonumber(t[1]) % 1679616) * 1000000 + tonumber(t[2])) % 1679616
    local digits, text = '0123456789abcdefghijklmnopqrstuvwxyz', ''
    for _ = 1, 4 do
      local d = n % 36
      text = string.sub(digits, d + 1, d + 1) .. text
      n = math.floor(n / 36)
    end
    fresh = text
  end
  return fresh
end
local out = {}
a, k = 6, 1
for _ = 1, tonumber(ARGV[5]) do
  local n, final, prior, tail = tonumber(ARGV[a]), ARGV[a + 1] == '1', ARGV[a + 2], ARGV[a + 3]
  local publisher_id, renumbered = ARGV[a + 4], false
  order = order + 1
  local placed = string.format('%d', order)
  local pos, seqs = {}, {}
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    local seq = redis.call('HINCRBY', meta, 's', 1)
    local epoch = redis.call('HGET', meta, 'e')
    if seq == 1 or not epoch then
      -- A counter that starts again must not collide with entries of the old one.
      epoch = new_epoch()
      redis.call('HSET', meta, 'e', epoch)
      redis.call('DEL', stream)
      if j == 0 then renumbered = true end
    end
    seqs[j + 1] = string.format('%d', seq)
    pos[j + 1] = '[' .. ARGV[a + 5 + 2 * j] .. ',' .. seqs[j + 1] .. ',"' .. epoch .. '"]'
    out[#out + 1] = seq
    out[#out + 1] = epoch
  end
  local payload = '{"id":' .. seqs[1] .. ',"pos":[' .. table.concat(pos, ',') .. ']' .. prior .. ',' .. tail
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    -- A final part marks its channels and gives them (mark and history) the finished TTL.
    local keep, keep_meta = ttl, meta_ttl
    if final then
      redis.call('HSET', meta, 'f', seqs[j + 1])
      keep, keep_meta = finished_ttl, finished_ttl
    end
    if size > 0 then
      redis.call('XADD', stream, 'MAXLEN', '~', size, seqs[j + 1] .. '-0', 'm', payload, 't', ms, 'o', placed)
      redis.call('EXPIRE', stream, keep)
    end
    redis.call('EXPIRE', meta, keep_meta)
  end
  if publisher_id ~= '' then
    -- The earliest retained update with this id wins; an index of an older epoch goes
    -- with its history (its seqs name nothing any more). Kept to the history's size.
    local index = KEYS[k + 2 * n]
    if renumbered then redis.call('DEL', index) end
    redis.call('ZADD', index, 'NX', seqs[1], publisher_id)
    if size > 0 then redis.call('ZREMRANGEBYRANK', index, 0, -(size + 1)) end
    redis.call('EXPIRE', index, final and finished_ttl or ttl)
    k = k + 1
  end
  for j = 0, n - 1 do
    redis.call('SPUBLISH', ARGV[a + 6 + 2 * j], payload)
  end
  a = a + 5 + 2 * n
  k = k + 2 * n
end
return out
"""
