"""Mercure on the sharded Redis Cluster broker (``cluster_mode: sharded``), on a real
3-master cluster: two hubs, ``a`` publishes and ``b`` subscribes (``Hubs`` of the Redis
endpoint tests), so every update crosses the cluster.

There is no hub sequence here: every update goes to the feed channel (``~mercure``), one
channel, hence one partition on one master, which numbers it (seq, epoch); the hub id is
that position, ``#<seq>.<epoch>``, and parses back to it. What is checked is the endpoint's
contract of docs/mercure.md ("Ids and replay") on that broker: live delivery across
instances, resume from a hub id, a publisher id or ``earliest`` with exactly what was
missed and the cursor header, private updates, paged replay, a slot move of the feed.
An update that must not arrive is checked by reading a public marker published after it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.partitions import partition, partition_slot
from sse_hub.config.settings import load_settings
from sse_hub.mercure.ids import parse_cursor
from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft
from sse_hub.web.state import HUB
from tests.redis.test_mercure_endpoint import BOOKS, MERCURE, PUBLISHER, Hubs, access_token, legacy_token
from tests.redis.test_mercure_endpoint import HUB as HUB_PATH
from tests.support.plugin import BrokerFactory, HubsFactory
from tests.support.redis_cluster import Cluster, running_cluster
from tests.support.sse_client import EventStream

HUB_ID = re.compile(r"#[1-9][0-9]*\.[0-9a-z]{4}")
TOPIC = f"{BOOKS}/1"


@pytest.fixture
async def hubs(start_hubs: HubsFactory) -> Hubs:
    return Hubs(*await start_hubs("sharded", mercure=MERCURE))


async def datas(stream: EventStream, count: int) -> list[str]:
    return [event.data for event in await stream.take(count, timeout=10)]


def test_mercure_is_accepted_in_both_cluster_modes() -> None:
    environ = {
        "SSE_HUB_BROKER__BACKEND": "redis-cluster",
        "SSE_HUB_MERCURE__ENABLED": "true",
        "SSE_HUB_MERCURE__PUBLISHER_JWT__SECRET": "mercure-secret-0123456789abcdef-0123456789",
    }
    assert load_settings(environ=environ).sharded, "sharded is the default"
    one_slot = load_settings(environ={**environ, "SSE_HUB_BROKER__CLUSTER_MODE": "one-slot"})
    assert one_slot.mercure.enabled and not one_slot.sharded


def test_the_feed_is_one_channel_whose_names_share_one_slot() -> None:
    """One channel, one partition: its counter, history, order and shard channel are on one
    master, so its seqs are one total order (what a Mercure cursor needs)."""
    keys = ShardKeys("p")
    names = (keys.meta(FEED_CHANNEL), keys.stream(FEED_CHANNEL), keys.order(FEED_CHANNEL))
    slots = {key_slot(name.encode()) for name in (*names, keys.shard_channel(FEED_CHANNEL))}
    assert slots == {partition_slot(partition(FEED_CHANNEL))}


async def test_an_update_published_on_one_hub_reaches_the_other_live_with_its_position_id(hubs: Hubs) -> None:
    assert isinstance(hubs.b.app[HUB].broker, ShardedClusterBroker)
    async with hubs.subscribe([("topic", f"{BOOKS}/{{id}}")]) as (stream, _):
        first = await hubs.publish([TOPIC], "one\n\ntwo")
        second = await hubs.publish([f"{BOOKS}/2"], "three", id="urn:uuid:3", type="book")
        third = await hubs.publish([TOPIC], "four")
        events = await stream.take(3, timeout=10)
    assert HUB_ID.fullmatch(first) and HUB_ID.fullmatch(third), (first, third)
    assert second == "urn:uuid:3"
    assert [(event.id, event.data, event.event) for event in events] == [
        (first, "one\n\ntwo", "message"),
        (second, "three", "book"),
        (third, "four", "message"),
    ]
    one, three = parse_cursor(first).position, parse_cursor(third).position
    assert one is not None and three is not None
    assert three == (one[0] + 2, one[1]), "one feed, one order: consecutive seqs in one epoch"


async def test_a_resume_from_a_hub_id_on_the_other_hub_gets_exactly_what_followed(hubs: Hubs) -> None:
    first = await hubs.publish([TOPIC], "one")
    await hubs.publish([TOPIC], "two")
    await hubs.publish(["https://example.com/elsewhere"], "not subscribed")
    await hubs.publish([TOPIC], "three")
    async with hubs.subscribe([("match", TOPIC)], {"Last-Event-ID": first}) as (stream, response):
        assert response.headers["Mercure-Last-Event-ID"] == first
        assert await datas(stream, 2) == ["two", "three"]
        await hubs.publish([TOPIC], "live")
        assert await datas(stream, 1) == ["live"], "nothing twice, nothing missed"


async def test_a_resume_from_a_publisher_id_gets_what_followed_its_earliest_use(hubs: Hubs) -> None:
    await hubs.publish([TOPIC], "before")
    await hubs.publish([TOPIC], "first use", id="urn:uuid:a")
    await hubs.publish([TOPIC], "secret", private="on")
    await hubs.publish([TOPIC], "second use", id="urn:uuid:a")
    last = await hubs.publish([TOPIC], "after")
    async with hubs.subscribe([("topic", TOPIC)], {"Last-Event-ID": "urn:uuid:a"}) as (stream, response):
        assert response.headers["Last-Event-ID"] == "urn:uuid:a"
        replayed = await stream.take(2, timeout=10)
        await hubs.publish([TOPIC], "live")
        live = await stream.next(10)
    assert [(event.id, event.data) for event in replayed] == [("urn:uuid:a", "second use"), (last, "after")]
    assert live.data == "live"


async def test_earliest_and_unknown_cursors_replay_everything_retained(hubs: Hubs) -> None:
    first = await hubs.publish([TOPIC], "one")
    await hubs.publish([TOPIC], "two")
    seq, epoch = parse_cursor(first).position or (0, "")
    other_epoch = "zzzz" if epoch != "zzzz" else "yyyy"
    for cursor in ("earliest", "urn:unknown", "#1", f"#{seq + 1000}.{epoch}", f"#{seq}.{other_epoch}"):
        async with hubs.subscribe([("match", TOPIC), ("last_event_id", cursor)]) as (stream, response):
            assert response.headers["Mercure-Last-Event-ID"] == "earliest", cursor
            assert await datas(stream, 2) == ["one", "two"], cursor


async def test_private_updates_reach_only_granted_subscribers_live_and_in_replay(hubs: Hubs) -> None:
    start = await hubs.publish([TOPIC], "start")
    granted = {"Authorization": f"Bearer {access_token([TOPIC])}"}
    async with (
        hubs.subscribe([("topic", TOPIC)]) as (anonymous, _),
        hubs.subscribe([("match", TOPIC)], granted) as (allowed, _),
    ):
        await hubs.publish([TOPIC], "private", private="")
        await hubs.publish([TOPIC], "public")
        assert await datas(anonymous, 1) == ["public"]
        assert await datas(allowed, 2) == ["private", "public"]
    token = legacy_token(subscribe=[TOPIC])
    async with (
        hubs.subscribe([("topic", TOPIC), ("lastEventID", start)]) as (anonymous, _),
        hubs.subscribe([("topic", TOPIC), ("lastEventID", start), ("authorization", token)]) as (allowed, _),
    ):
        assert await datas(anonymous, 1) == ["public"]
        assert await datas(allowed, 2) == ["private", "public"]


async def test_a_paged_replay_skips_pages_the_subscriber_may_not_see(start_hubs: HubsFactory) -> None:
    limits = {"max_message_bytes": 4096, "client_buffer_bytes": 8192}  # two updates a page
    hubs = Hubs(*await start_hubs("sharded", mercure=MERCURE, limits=limits))
    first = await hubs.publish([TOPIC], "0")
    for index in range(1, 9):
        # Two pages kept nothing, then one of the following pages keeps one of two.
        await hubs.publish([TOPIC], str(index), **({"private": "on"} if index in (1, 2, 3, 4, 7) else {}))
    async with hubs.subscribe([("topic", TOPIC), ("lastEventID", first)]) as (stream, response):
        assert response.headers["Last-Event-ID"] == first
        assert await datas(stream, 3) == ["5", "6", "8"]
        await hubs.publish([TOPIC], "live")
        assert await datas(stream, 1) == ["live"]


async def test_the_broker_finds_the_earliest_retained_use_of_a_publisher_id(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker("sharded")

    first, _, again = await broker.publish([update("urn:a"), update(None), update("urn:a")])
    assert await broker.find_publisher_position(FEED_CHANNEL, "urn:a") == (first.pos[0][1], first.pos[0][2])
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:a") == first.id
    assert isinstance(broker, ShardedClusterBroker) and broker.publisher_id_scans == 0, "the index answered"
    assert await broker.find_publisher_id(FEED_CHANNEL, "urn:unknown") is None
    assert broker.publisher_id_scans == 1, "an id the index lacks is looked for in the history"
    assert again.pos[0][1] == first.pos[0][1] + 2


def update(event_id: str | None) -> Draft:
    """A Mercure update on the feed, with the publisher's own id when one is given."""
    return Draft(event="message", data="x", channels=(FEED_CHANNEL,), mercure=MercureMeta((TOPIC,), False, event_id))


async def test_the_publisher_id_index_keeps_history_size_ids_and_forgets_an_epoch_that_ended(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    broker, _ = await start_broker("sharded", history={"size": 3})
    assert isinstance(broker, ShardedClusterBroker)
    for n in range(5):
        await broker.publish([update(f"urn:{n}")])
    keys = ShardKeys(prefix)
    cluster = RedisCluster.from_url(redis_cluster.url)
    try:
        assert await cluster.zrange(keys.publisher_ids(FEED_CHANNEL), 0, -1) == [b"urn:2", b"urn:3", b"urn:4"]
        assert (await broker.find_publisher_position(FEED_CHANNEL, "urn:4"))[0] == 5  # type: ignore[index]
        assert broker.publisher_id_scans == 0
        # An entry naming an update that carries another id (left by an older release
        # across an epoch change) is no answer.
        await cluster.zadd(keys.publisher_ids(FEED_CHANNEL), {"urn:stale": 5})
        assert await broker.find_publisher_position(FEED_CHANNEL, "urn:stale") is None
        await cluster.delete(keys.meta(FEED_CHANNEL))  # the counter is lost: a new epoch starts
        [renumbered] = await broker.publish([update("urn:new")])
        assert renumbered.pos[0][1] == 1
        assert await cluster.zrange(keys.publisher_ids(FEED_CHANNEL), 0, -1) == [b"urn:new"]
        assert await broker.find_publisher_position(FEED_CHANNEL, "urn:4") is None, "gone with its epoch"
        assert await broker.find_publisher_position(FEED_CHANNEL, "urn:new") == renumbered.pos[0][1:]
    finally:
        await cluster.aclose()


async def test_a_stream_follows_the_feed_through_a_slot_move_with_no_gap(
    start_hubs: HubsFactory, tmp_path: Path
) -> None:
    """The repair path: the feed's slot moves to another master while updates flow; the
    stream on ``b`` gets every one, once, in order."""
    with running_cluster(tmp_path) as cluster:
        hubs = Hubs(*await start_hubs("sharded", url=cluster.url, mercure=MERCURE))
        slot = partition_slot(partition(FEED_CHANNEL))
        source = cluster.owner_of(slot)
        target = next(node for node in cluster.masters() if node.port != source.port)
        async with hubs.subscribe([("topic", TOPIC)]) as (stream, _):
            sent = [await hubs.publish([TOPIC], f"{n}", id=f"urn:{n}") for n in range(10)]
            mover = asyncio.create_task(asyncio.to_thread(cluster.move_slot, slot, target))
            while not mover.done() or len(sent) < 20:
                sent.append(await publish_retrying(hubs, len(sent)))
            await mover
            assert cluster.owner_of(slot).port == target.port
            events = await stream.take(len(sent), timeout=20)
        assert [event.id for event in events] == sent


async def publish_retrying(hubs: Hubs, n: int, attempts: int = 100) -> str:
    """Publish update ``n``, again after a 503 while the slot moves (Redis refused the
    script before it ran: MOVED, ASK, TRYAGAIN)."""
    form = urlencode([("topic", TOPIC), ("data", f"{n}"), ("id", f"urn:{n}")])
    headers = {"Authorization": f"Bearer {PUBLISHER}", "Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(attempts):
        response = await hubs.a.post(HUB_PATH, data=form, headers=headers)
        if response.status == 200:
            return await response.text()
        assert response.status == 503, await response.text()
        await asyncio.sleep(0.02)  # a back-off: no event says the slot is stable again
    raise AssertionError("the hub never published again")
