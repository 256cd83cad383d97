"""Channels that end on the sharded Redis Cluster broker (issue 26), at the broker level:
two ``ShardedClusterBroker``s on the session's real 3-master cluster, as in
test_sharded_broker.py. The final mark is stored with the channel's history by the publish
script (``sse_hub/broker/sharded/publish.py``, invariants 5 and 6), so both instances agree
on it; a batch that names an ended channel is refused whole, also across partitions; after
``history.finished_ttl_seconds`` the channel is one that was never used. Last, the refusal
through HTTP on two sharded hubs (409 ``channel_finished``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.broker.sharded.partitions import partition, partition_slot
from sse_hub.broker.sharded.publish import Part, script_call
from sse_hub.broker.sharded.publish_script import PUBLISH_SCRIPT
from sse_hub.errors import ChannelFinished
from sse_hub.messages.message import Draft, Message
from sse_hub.messages.positions import NOWHERE
from tests.support.brokers import broker_section, draft
from tests.support.http import publish
from tests.support.plugin import BrokerFactory, HubsFactory
from tests.support.redis_cluster import Cluster
from tests.support.settings import make_settings
from tests.support.sharded import receipt_positions, seqs
from tests.support.waiting import eventually, wait_until


def final(*channels: str, data: str = "done") -> Draft:
    return dataclasses.replace(draft(*channels, data=data), final=True)


def other_partitions(stem: str, count: int) -> list[str]:
    """``count`` channel names, each in a partition of its own."""
    names: dict[int, str] = {}
    for n in range(1000):
        names.setdefault(partition(f"{stem}.{n}"), f"{stem}.{n}")
        if len(names) == count:
            return list(names.values())
    raise AssertionError("not enough partitions")


async def test_both_brokers_agree_where_a_channel_ended(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        await a.publish([draft("job"), draft("job"), draft("other")])
        [receipt] = await b.publish([final("job")])
        assert receipt.final and [(c, s) for c, s, _ in receipt.pos] == [("job", 3)]
        ended = {"job": (3, receipt.pos[0][2])}
        assert await a.finished_at(["job", "other", "never"]) == ended
        assert await b.finished_at(["job", "other", "never"]) == ended
        with pytest.raises(TypeError):
            await a.finished(["job"])


async def test_a_publish_after_the_final_is_refused_on_either_broker_and_nothing_is_stored(
    start_broker: BrokerFactory,
) -> None:
    beacon = "{job}.beacon"  # the partition of "job": its parts come on the same link, after
    assert partition(beacon) == partition("job")
    async with start_broker.group(2, "sharded") as [(a, got_a), (b, _)]:
        await a.attach(["job", beacon])
        await a.publish([draft("job"), final("job")])
        for broker in (a, b):
            with pytest.raises(ChannelFinished) as refused:
                await broker.publish([draft("job")])
            assert refused.value.detail == {"channel": "job"} and refused.value.status == 409
        with pytest.raises(ChannelFinished):
            await b.publish([final("job")])
        assert (await b.positions(["job"]))["job"][0] == 2
        page = await b.history_after({"job": NOWHERE}, 10)
        assert seqs(page.messages, "job") == [1, 2] and page.complete
        [marker] = await b.publish([draft(beacon)])
        await wait_until(lambda: any(part.pos == marker.pos for part in got_a))
        assert seqs(got_a, "job") == [1, 2], "nothing refused was published"


async def test_a_batch_naming_an_ended_channel_in_another_partition_is_refused_whole(
    start_broker: BrokerFactory,
) -> None:
    one, two, three = other_partitions("batch", 3)
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        [ended] = await a.publish([final(two)])
        for batch in ([draft(one), draft(three, two), draft(one)], [draft(one, three), draft(two)]):
            with pytest.raises(ChannelFinished) as refused:
                await b.publish(batch)
            assert refused.value.channel == two
        assert await a.positions([one, two, three]) == {one: NOWHERE, two: ended.pos[0][1:], three: NOWHERE}


async def test_a_batch_in_one_script_call_is_refused_whole_by_the_script(start_broker: BrokerFactory) -> None:
    """A tagged batch is one script call, so the broker reads no marks first: the script
    refuses it before it writes."""
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        await a.publish([final("{r}.ended")])
        with pytest.raises(ChannelFinished) as refused:
            await b.publish([draft("{r}.open"), draft("{r}.open", "{r}.ended")])
        assert refused.value.channel == "{r}.ended"
        assert await a.positions(["{r}.open"]) == {"{r}.open": NOWHERE}


async def test_a_draft_after_a_final_one_on_its_channel_refuses_the_batch(start_broker: BrokerFactory) -> None:
    one, two = other_partitions("follow", 2)
    async with start_broker.group(2, "sharded") as [(a, _), _second]:
        for batch in ([final(one), draft(one)], [draft(two), final(one, two), draft(two)]):
            with pytest.raises(ChannelFinished):
                await a.publish(batch)
        assert await a.positions([one, two]) == {one: NOWHERE, two: NOWHERE}
        assert await a.finished_at([one, two]) == {}


async def test_the_script_refuses_a_call_whose_later_part_names_a_channel_an_earlier_part_ended(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    """The script's own check, without the broker's checks before it (the authority when a
    final races a batch), on a client of the test's own."""
    drafts = [final("{s}.a"), draft("{s}.b"), draft("{s}.a")]
    parts = [(Part(n, partition("{s}.a"), d.channels), d, ()) for n, d in enumerate(drafts)]
    cluster = RedisCluster.from_url(redis_cluster.url, protocol=2)
    async with start_broker.group(1, "sharded") as [(a, _)]:
        try:
            script = cluster.register_script(PUBLISH_SCRIPT)
            with pytest.raises(ResponseError, match=r'^FINISHED "\{s\}\.a"$'):
                await script(*script_call(a.keys, parts, 100, 60, 60))
        finally:
            await cluster.aclose()
        assert await a.positions(["{s}.a", "{s}.b"]) == {"{s}.a": NOWHERE, "{s}.b": NOWHERE}


async def test_final_parts_are_delivered_and_read_back_with_final(start_broker: BrokerFactory) -> None:
    one, two = other_partitions("parts", 2)
    async with start_broker.group(2, "sharded") as [(a, _), (b, got_b)]:
        await b.attach([one, two])
        await a.publish([draft(one)])
        [receipt] = await a.publish([final(one, two)])
        assert receipt.final and receipt.channels == (one, two)
        await wait_until(lambda: len(got_b) == 3)
        assert [(part.channels, part.final) for part in got_b] == [((one,), False), ((one,), True), ((two,), True)]
        page = await a.history_after({one: NOWHERE, two: NOWHERE}, 10)
        assert [(part.pos, part.final) for part in page.messages] == [(part.pos, part.final) for part in got_b]
        assert await b.finished_at([one, two]) == {c: (s, e) for c, s, e in receipt.pos}


async def test_a_lost_meta_loses_the_mark_and_the_channel_starts_again(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        [ended] = await a.publish([final("job")])
        redis_cluster.owner_of(partition_slot(partition("job"))).client().delete(a.keys.meta("job"))
        assert await b.finished_at(["job"]) == {}
        [again] = await b.publish([draft("job")])
        assert again.pos[0][1] == 1 and again.pos[0][2] != ended.pos[0][2]


@contextlib.asynccontextmanager
async def watched_broker(
    url: str, prefix: str, **sections: object
) -> AsyncIterator[tuple[ShardedClusterBroker, list[Message], list[None]]]:
    """A sharded broker that also records its ``lost()`` calls."""
    settings = make_settings(broker=broker_section("sharded", url, prefix), **sections)
    broker = ShardedClusterBroker(settings, f"{prefix}-watched")
    delivered: list[Message] = []
    losses: list[None] = []
    try:
        await broker.start(delivered.append, lambda: losses.append(None))
        yield broker, delivered, losses
    finally:
        await broker.stop()


async def test_a_short_finished_ttl_forgets_mark_and_history_and_the_channel_is_new_again(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
    prefix: str,
) -> None:
    history = {"finished_ttl_seconds": 1}
    async with (
        start_broker.group(1, "sharded", history=history) as [(a, _)],
        watched_broker(redis_cluster.url, prefix, history=history) as (b, got_b, losses),
    ):
        await b.attach(["job"])
        await a.publish([draft("job"), final("job")])
        await wait_until(lambda: seqs(got_b, "job") == [1, 2])
        assert (await a.finished_at(["job"])).keys() == {"job"}

        async def forgotten() -> bool:
            page = await a.history_after({"job": NOWHERE}, 10)
            return not await a.finished_at(["job"]) and not page.messages and page.current == {"job": NOWHERE}

        await eventually(forgotten, timeout=10)
        [again] = await a.publish([draft("job")])
        assert again.pos[0][1] == 1 and not again.final
        await wait_until(lambda: len(got_b) == 3)
        assert got_b[-1].pos == again.pos
        assert losses == [], "a forgotten channel used again lost nothing"


async def test_two_sharded_hubs_answer_409_to_a_publish_or_batch_on_an_ended_channel(
    start_hubs: HubsFactory,
) -> None:
    a, b = await start_hubs("sharded")
    await publish(a, {"channel": "job", "data": "last", "final": True})
    refusal = {"error": "channel_finished", "detail": {"channel": "job"}}
    for body in ({"channel": "job", "data": "x"}, [{"channel": "free", "data": "x"}, {"channel": "job", "data": "x"}]):
        reply = await publish(b, body, expect=409)
        assert {key: reply[key] for key in refusal} == refusal
    receipt = await publish(a, {"channel": "free", "data": "x"})
    assert receipt_positions(receipt)["free"][0] == 1, "the refused batch stored nothing"
