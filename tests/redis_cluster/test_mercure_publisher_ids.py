"""``Broker.find_publisher_id`` on every broker: the cursor lookup for a Mercure id a
publisher chose (``urn:uuid:...``) resolves to the earliest retained update that used it,
and forgets an update once its history does. The memory broker answers from an index kept
with the history, the Redis brokers by scanning it; both must agree."""

from __future__ import annotations

from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft
from tests.support.brokers import ON_EVERY_BROKER
from tests.support.plugin import BrokerFactory


def update(event_id: str | None, data: str = "x") -> Draft:
    meta = MercureMeta(topics=("https://example.com/books/1",), event_id=event_id)
    return Draft(event="message", data=data, channels=(FEED_CHANNEL,), mercure=meta)


@ON_EVERY_BROKER
async def test_a_publisher_id_resolves_to_the_earliest_retained_update_that_used_it(
    start_broker: BrokerFactory,
) -> None:
    broker, _ = await start_broker(history={"size": 3})
    first, _, again = await broker.publish([update("urn:a"), update(None), update("urn:a")])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:a") == first.id
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:unknown") is None
    assert await broker.find_publisher_id("elsewhere", "urn:a") is None

    # One more update trims the first: the duplicate, still retained, is the earliest now.
    await broker.publish([update("urn:b")])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:a") == again.id
    # Three more trim it too: the id is no longer known.
    await broker.publish([update(None), update(None), update(None)])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:a") is None
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:b") is None
