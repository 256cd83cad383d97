"""The publisher-id index of the Mercure history on Redis (``P:pubid:~mercure``): a resume
from a publisher's id is answered by the index, without a scan of the history, and the
index never names an update the history no longer retains. ``publisher_id_scans`` counts
the lookups the index left to the scan. That every broker gives the same answers is
tests/redis_cluster/test_mercure_publisher_ids.py."""

from __future__ import annotations

from redis.asyncio import Redis

from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft, Message
from tests.support.plugin import BrokerFactory


def update(event_id: str | None) -> Draft:
    meta = MercureMeta(topics=("https://example.com/books/1",), event_id=event_id)
    return Draft(event="message", data="x", channels=(FEED_CHANNEL,), mercure=meta)


async def test_a_retained_publisher_id_is_found_in_the_index_without_a_scan(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker("redis", history={"size": 1000})
    published = await broker.publish([update(f"urn:{n}") for n in range(1500)])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:1499") == published[-1].id
    # The oldest retained one, a page of the scan away from the newest.
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:500") == published[500].id
    assert broker.publisher_id_scans == 0
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:499") is None, "trimmed with its update"
    assert broker.publisher_id_scans == 1, "a miss falls back to the scan"


async def test_the_index_holds_no_more_ids_than_the_history_retains_updates(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis", history={"size": 3})
    await broker.publish([update(f"urn:{n}") for n in range(10)])
    assert await redis.zrange(f"{prefix}:pubid:{FEED_CHANNEL}", 0, -1) == [b"urn:7", b"urn:8", b"urn:9"]
    assert await redis.pttl(f"{prefix}:pubid:{FEED_CHANNEL}") > 0, "it expires with the history"


async def test_the_index_never_names_an_update_that_left_the_history(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker("redis", history={"size": 3})
    await broker.publish([update("urn:a")])
    # Updates without an id trim it from the history, not from the index.
    await broker.publish([update(None), update(None), update(None)])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:a") is None


async def test_an_update_stored_without_an_index_entry_is_still_found(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    # As an instance of wire version 1 stores it: in the history only.
    broker, _ = await start_broker("redis")
    missed_id = int(await redis.incr(f"{prefix}:seq"))
    older = Message(
        id=missed_id, event="message", data="x", channels=(FEED_CHANNEL,), mercure=MercureMeta(("t",), False, "urn:v1")
    )
    await redis.xadd(f"{prefix}:history:{FEED_CHANNEL}", {"m": older.to_payload()}, id=f"{missed_id}-0")
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:v1") == missed_id
    assert broker.publisher_id_scans == 1
