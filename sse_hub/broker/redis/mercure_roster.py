"""This instance's Mercure subscribers in Redis, beside its roster: what the subscriptions
API lists (``ClientDirectory.mercure_subscribers``), cluster-wide.

The key is ``P:mercure:{instance}``, a hash: client id -> JSON ``{"subscriber",
"topics", "payload", "match_types"}`` (``keyspace``; ``match_types`` is absent from what a
release before it wrote: read as draft-07 topics). A Mercure stream's channel is ``FEED_CHANNEL``, so
its client id is already a member ``~mercure\\n{client id}`` of the roster's members set:
a page of subscribers is the roster's channel read (``roster.CHANNEL_SCRIPT``) with this
hash in place of the records, and one subscriber the roster's find (``FIND_SCRIPT``); the
roster owns this object and passes its scripts in.

Invariants (the roster's, ``roster``):

1. Writes ride on the directory's batch: a change waits in ``changed`` until the next
   write of the directory, which sets or deletes those fields; a rewrite of the directory
   rewrites the hash whole. Nothing here awaits on the connect path.
2. The facts never change while a subscriber is one, so the periodic refresh only renews
   the key's TTL with the roster's (no rewrite of the values).
3. A client listed in the members set but without a field here is not a Mercure
   subscriber (not yet written, or no longer one): pages skip it, so a page may hold
   fewer than ``limit`` subscribers while ``next_after`` says more may follow.
4. Reads: one script call over the live instances, at most ``limit + 1`` members each,
   ``limit`` at most ``MAX_PAGE``.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.scripts import describe
from sse_hub.messages.contract import MercureSubscriber, MercureSubscribers
from sse_hub.messages.mercure import FEED_CHANNEL

logger = logging.getLogger(__name__)

# Fields written per HSET (a rewrite of many subscribers goes in several).
WRITE_CHUNK = 1000


class StoredSubscriber(BaseModel):
    """A Mercure subscriber as read back from Redis (outside this process's control)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    subscriber: Annotated[str, Field(min_length=1)]
    topics: tuple[str, ...]
    payload: str | None = None
    match_types: tuple[Literal["topic", "exact", "urlpattern"], ...] = ()


def subscriber_json(subscriber: MercureSubscriber) -> str:
    fields = {
        "subscriber": subscriber.subscriber,
        "topics": list(subscriber.topics),
        "payload": subscriber.payload,
        "match_types": list(subscriber.match_types),
    }
    return json.dumps(fields, separators=(",", ":"))


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _read(raw: bytes | str | None) -> MercureSubscriber | None:
    if raw is None:
        return None
    try:
        stored = StoredSubscriber.model_validate_json(raw)
    except ValidationError as exc:
        logger.warning("skipping a malformed Mercure subscriber in Redis: %s", describe(exc))
        return None
    if stored.match_types and len(stored.match_types) != len(stored.topics):
        logger.warning("skipping a Mercure subscriber in Redis whose match_types do not fit its topics")
        return None
    return MercureSubscriber(stored.subscriber, stored.topics, stored.payload, stored.match_types)


class MercureRoster:
    """This instance's Mercure subscribers, and the cluster's reads (module docstring)."""

    def __init__(self, keyspace: Keyspace, instance_id: str, page: AsyncScript, find: AsyncScript) -> None:
        """``page``, ``find``: the roster's channel and find scripts."""
        self._keys = keyspace
        self._key = f"{keyspace.mercure_prefix}{instance_id}"
        self._page_script = page
        self._find_script = find
        #: Each local Mercure subscriber's stored JSON, by client id.
        self.subscribers: dict[str, str] = {}
        #: Client ids whose field is to be set or deleted at the next write.
        self.changed: set[str] = set()

    def set(self, client_id: str, subscriber: MercureSubscriber | None) -> None:
        if subscriber is None:
            if self.subscribers.pop(client_id, None) is None:
                return
        else:
            self.subscribers[client_id] = subscriber_json(subscriber)
        self.changed.add(client_id)

    def rewrite(self, pipe: Pipeline) -> None:
        """Replace the hash with every local subscriber (in the directory's transaction;
        the roster renews the TTL after it)."""
        self.changed.clear()
        pipe.delete(self._key)
        items = list(self.subscribers.items())
        for start in range(0, len(items), WRITE_CHUNK):
            pipe.hset(self._key, mapping=dict(items[start : start + WRITE_CHUNK]))

    def write(self, pipe: Pipeline) -> None:
        """The changes since the last write (one pipeline)."""
        changed, self.changed = self.changed, set()
        present = [client_id for client_id in changed if client_id in self.subscribers]
        if present:
            pipe.hset(self._key, mapping={client_id: self.subscribers[client_id] for client_id in present})
        gone = [client_id for client_id in changed if client_id not in self.subscribers]
        if gone:
            pipe.hdel(self._key, *gone)

    def expire(self, pipe: Pipeline, ttl_ms: int) -> None:
        pipe.pexpire(self._key, ttl_ms)

    # -- reads: raise RedisError/OSError ----------------------------------------------

    async def page(self, after: str | None, limit: int) -> MercureSubscribers:
        """At most ``limit`` subscribers (``1 <= limit <= roster.MAX_PAGE``, the caller's bound)."""
        keys = self._keys
        _, page = await self._page_script(
            keys=[keys.instances],
            args=[keys.members_prefix, keys.mercure_prefix, FEED_CHANNEL, after or "", limit],
        )
        entries = list(zip(page[::3], page[2::3], strict=True))
        next_after = _text(entries[limit - 1][0]) if len(entries) > limit else None
        found = {_text(raw_id): _read(raw) for raw_id, raw in entries[:limit]}
        return MercureSubscribers(
            {client_id: subscriber for client_id, subscriber in found.items() if subscriber is not None}, next_after
        )

    async def find(self, client_id: str) -> MercureSubscriber | None:
        found = await self._find_script(keys=[self._keys.instances], args=[self._keys.mercure_prefix, client_id])
        return _read(found[1]) if found else None
