"""Recovery after the subscriber connection was lost: backoff, and what was missed.

Invariants:

1. Reconnect attempts back off exponentially (capped) with jitter, so a restarted Redis is
   not hit by every instance at once.
2. What was missed is read from the history streams of the channels this instance serves
   (its subscriptions and ``*``), never by scanning every stream: the cost follows the
   instance's interest, not the cluster's.
3. The read is bounded: at most ``MAX_RECOVERED_MESSAGES`` per channel. When more were
   missed, nothing is recovered (None): the broker ends its streams, which resume from
   history with their own ids.
4. Only messages up to the sequence read first are returned; later ones arrive on the
   subscription, which was confirmed before this read.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator

from redis.asyncio import Redis

from sse_hub.broker.redis.entries import merge_runs, parse_entries
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.messages.message import Message

BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
MAX_RECOVERED_MESSAGES = 10_000
CHANNELS_PER_PIPELINE = 1000


def backoff_delays() -> Iterator[float]:
    """Jittered exponential delays: 0.05-0.1 s, 0.1-0.2 s, ... up to 2.5-5 s."""
    delay = BACKOFF_FIRST_SECONDS
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, BACKOFF_MAX_SECONDS)


async def read_missed(
    redis: Redis, keyspace: Keyspace, channels: Collection[str], after_id: int
) -> list[Message] | None:
    """The stored messages of ``channels`` with an id above ``after_id``, in id order, each
    once; None when there are too many (invariant 3). Raises RedisError/OSError."""
    last_id = int(await redis.get(keyspace.seq) or 0)
    if last_id <= after_id or not channels:
        return []
    names = list(channels)
    runs: list[list[Message]] = []
    for start in range(0, len(names), CHANNELS_PER_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for channel in names[start : start + CHANNELS_PER_PIPELINE]:
                pipe.xrange(
                    keyspace.history(channel),
                    min=f"({after_id}-0",
                    max=f"{last_id}-0",
                    count=MAX_RECOVERED_MESSAGES + 1,
                )
            for entries in await pipe.execute():
                if len(entries) > MAX_RECOVERED_MESSAGES:
                    return None
                runs.append(parse_entries(entries))
    return merge_runs(runs)
