"""The Redis broker's Lua scripts, and the pure helpers that build their arguments and read
what Redis returns (script results, stream entries).

The key layout and the broker's invariants are in ``sse_hub.broker.redis``'s docstring.
What the scripts guarantee:

1. A script runs atomically (Redis runs one script at a time, "Scripting with Lua",
   https://redis.io/docs/latest/develop/interact/programmability/eval-intro/): INCR, XADD
   and PUBLISH of a message in ``PUBLISH_SCRIPT`` are never interleaved with another
   instance's, so every instance receives the messages in id order.
2. Ids cross the script as strings formatted with ``'%d'``: Lua numbers are doubles.
3. Presence is timed by Redis's own clock (``TIME``), so instances with skewed clocks
   agree on which of them are live.

Nothing here does I/O except logging a malformed entry; ``RedisBroker`` registers the
scripts and calls them.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sse_hub.models import Draft, Message, message_from_payload

logger = logging.getLogger(__name__)

# KEYS: the sequence, then the history stream of each channel of each message in order.
# ARGV: id floor, trim operator, trim threshold, pub/sub channel, then per message its
# payload after the id and its number of channels. Returns the ids as strings (Lua numbers
# are doubles: '%d' keeps large ids exact).
PUBLISH_SCRIPT = """
local seq = KEYS[1]
if tonumber(redis.call('GET', seq) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', seq, ARGV[1])
end
local ids = {}
local key = 2
for i = 5, #ARGV, 2 do
  local id = string.format('%d', redis.call('INCR', seq))
  local payload = '{"id":' .. id .. ARGV[i]
  for _ = 1, tonumber(ARGV[i + 1]) do
    redis.call('XADD', KEYS[key], 'MAXLEN', ARGV[2], ARGV[3], id .. '-0', 'm', payload)
    key = key + 1
  end
  redis.call('PUBLISH', ARGV[4], payload)
  ids[#ids + 1] = id
end
return ids
"""

_LIVE_INSTANCES = """
local clock = redis.call('TIME')
local now = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

# KEYS: instances, this instance's summary, its client set. ARGV: instance id, summary, ttl ms.
PRESENCE_SCRIPT = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""

# KEYS: instances. ARGV: summary key prefix. Missing summaries come back as nil.
SUMMARIES_SCRIPT = (
    _LIVE_INSTANCES
    + """
local summaries = {}
for i, id in ipairs(live) do
  summaries[i] = redis.call('GET', ARGV[1] .. id)
end
return summaries
"""
)

# KEYS: instances. ARGV: client set key prefix, client id.
CLIENT_EXISTS_SCRIPT = (
    _LIVE_INSTANCES
    + """
for _, id in ipairs(live) do
  if redis.call('SISMEMBER', ARGV[1] .. id, ARGV[2]) == 1 then
    return 1
  end
end
return 0
"""
)


class InstanceSummary(BaseModel):
    """An instance's summary as read back from Redis (outside this process's control)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance: str
    started_at: str
    total_clients: Annotated[int, Field(ge=0)]
    channels: dict[str, Annotated[int, Field(ge=0)]]


def payload_tail(draft: Draft) -> bytes:
    """The draft's broker payload after its id: the script prepends ``{"id":N``, so the
    payload every instance parses carries the id Redis assigned."""
    head = b'{"id":1'
    payload = draft.numbered(1).to_payload()
    if not payload.startswith(head + b","):
        raise RuntimeError("Message.to_payload no longer starts with the id")
    return payload[len(head) :]


def parse_entries(entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> list[Message]:
    """Stream entries (oldest first) as messages; malformed ones are logged and skipped."""
    messages = []
    for entry_id, fields in entries:
        try:
            messages.append(message_from_payload(fields[b"m"]))
        except (KeyError, ValidationError) as exc:
            logger.warning("skipping malformed history entry %s: %s", entry_id.decode(errors="replace"), describe(exc))
    return messages


def merge_runs(runs: Iterable[Sequence[Message]]) -> list[Message]:
    """Merge id-ordered runs into one, keeping each id once (a message on two channels is
    stored in both streams)."""
    merged: list[Message] = []
    for message in heapq.merge(*runs, key=lambda message: message.id):
        if not merged or merged[-1].id != message.id:
            merged.append(message)
    return merged


def describe(exc: Exception) -> str:
    """A validation error without the input (payloads are never logged above DEBUG)."""
    if not isinstance(exc, ValidationError):
        return f"missing field {exc}"
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(f"{'.'.join(map(str, error['loc'])) or '(payload)'}: {error['msg']}" for error in errors[:3])
