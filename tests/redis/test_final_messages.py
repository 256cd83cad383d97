"""Streams that end, on the Redis broker: the final mark lives in the channel's history
stream (the final message's entry), written by the publish script with the message, so
every instance on one Redis agrees; a publish call that names an ended channel is refused
whole, alone among the calls of its group; the mark and the history go after
``history.finished_ttl_seconds``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.recovery import read_missed
from sse_hub.errors import ChannelFinished
from sse_hub.messages.message import Draft, Message
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.waiting import eventually, wait_until


def final(*channels: str, data: str = "done") -> Draft:
    return Draft(event="message", data=data, channels=channels, final=True)


async def refused(broker: RedisBroker, drafts: list[Draft]) -> str:
    """Publish ``drafts``, expecting ``ChannelFinished``; the channel it names."""
    with pytest.raises(ChannelFinished) as refusal:
        await broker.publish(drafts)
    assert refusal.value.status == 409 and refusal.value.code == "channel_finished"
    return str(refusal.value.detail["channel"])  # type: ignore[index]


async def marker_arrives(publisher: RedisBroker, delivered: list[Message], channel: str) -> None:
    """Everything published before a marker to a served channel has arrived once it has."""
    [marker] = await publisher.publish([draft(channel, data="marker")])
    await wait_until(lambda: any(message.id == marker.id for message in delivered))


async def test_two_instances_on_one_redis_agree_that_a_channel_has_ended(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, _ = await start_broker("redis", "b")
    assert await b.finished(["job"]) == {}
    [_, last] = await a.publish([draft("job", "other"), final("job")])
    assert last.final
    assert await a.finished(["job", "other", "never"]) == {"job": last.id}
    assert await b.finished(["job", "other", "never"]) == {"job": last.id}


async def test_a_publish_after_the_final_is_refused_on_either_instance_and_leaves_nothing(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b")
    await b.attach(["job", "watch"])
    [ending] = await a.publish([final("job")])
    sequence = await redis.get(f"{prefix}:seq")
    for broker in (a, b):
        assert await refused(broker, [draft("job", data="late")]) == "job"
    assert await redis.get(f"{prefix}:seq") == sequence, "no id was handed out"
    assert await redis.xlen(f"{prefix}:history:job") == 1
    await marker_arrives(a, delivered, "watch")
    assert [message.data for message in delivered] == ["done", "marker"], "nothing late was published"
    history = await a.history(["job"], 0)
    assert [message.id for message in history.messages] == [ending.id]


async def test_a_batch_that_names_one_ended_channel_is_refused_whole(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis")
    await broker.publish([final("job")])
    assert await refused(broker, [draft("fresh"), draft("other", "job"), draft("fresh")]) == "job"
    assert not await redis.exists(f"{prefix}:history:fresh", f"{prefix}:history:other")


async def test_a_message_after_a_final_one_in_the_same_call_refuses_the_call(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis")
    assert await refused(broker, [final("job", "side"), draft("side")]) == "side"
    assert not await redis.exists(f"{prefix}:history:job", f"{prefix}:history:side")
    assert await broker.finished(["job", "side"]) == {}, "the final message was not applied either"


async def test_only_the_call_that_names_an_ended_channel_is_refused_in_a_group(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    """The publisher sends concurrent calls as one script call; the script refuses each call
    on its own: one naming a channel that ended before, or that an earlier call of the
    same group ended, while the calls around them go through; a refused call ends nothing."""
    broker, delivered = await start_broker("redis")
    await broker.attach(["job", "old", "other", "x"])
    await broker.publish([final("old")])
    script = broker.publisher.script
    answers: list[int] = []

    async def counted(**kwargs: Any) -> Any:
        reply = await script(**kwargs)
        answers.append(len(reply))
        return reply

    broker.publisher.script = counted  # type: ignore[assignment]
    calls = [
        [draft("other", data="first")],
        [draft("other", data="refused: old ended before"), draft("old")],
        [final("job", data="the end")],
        [draft("job", data="refused: job ended just before"), draft("other")],
        [final("x", data="refused: x follows its own end"), draft("x")],
        [draft("x", data="x is not ended")],
        [draft("other", data="last")],
    ]
    async with asyncio.timeout(5):
        results = await asyncio.gather(*(broker.publish(call) for call in calls), return_exceptions=True)
    assert answers == [7], "one script call answered the seven publish calls"
    outcomes = [r.detail["channel"] if isinstance(r, ChannelFinished) else [m.data for m in r] for r in results]  # type: ignore[index, union-attr]
    assert outcomes == [["first"], "old", ["the end"], "job", "x", ["x is not ended"], ["last"]]
    await wait_until(lambda: len(delivered) == 5)
    assert [message.data for message in delivered] == ["done", "first", "the end", "x is not ended", "last"]
    assert [message.final for message in delivered] == [True, False, True, False, False]
    assert await redis.xlen(f"{prefix}:history:other") == 2
    assert await broker.finished(["job", "old", "other", "x"]) == {"old": delivered[0].id, "job": delivered[2].id}


async def test_the_final_message_arrives_and_reads_back_with_final_set(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b")
    await b.attach(["job"])
    published = await a.publish([draft("job", data="token"), final("job")])
    await wait_until(lambda: len(delivered) == 2)
    assert [(m.data, m.final) for m in delivered] == [("token", False), ("done", True)]
    history = await b.history(["job"], 0)
    assert [(m.id, m.final) for m in history.messages] == [(m.id, m.final) for m in published]
    missed = await read_missed(redis, b._keys, ["job"], 0)
    assert missed is not None and [m.final for m in missed] == [False, True]


async def test_an_ended_channel_is_forgotten_after_the_finished_ttl(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis", history={"ttl_seconds": 100, "finished_ttl_seconds": 1})
    [before] = await broker.publish([draft("job")])
    await broker.publish([draft("other"), final("job")])
    assert 0 < await redis.pttl(f"{prefix}:history:job") <= 1000, "the finished ttl"
    assert await redis.pttl(f"{prefix}:history:other") > 1000, "the history ttl: other has not ended"

    async def forgotten() -> bool:
        return await broker.finished(["job"]) == {}

    await eventually(forgotten, timeout=5)  # a wait for time to pass: the ttl
    history = await broker.history(["job"], 0)
    assert history.messages == []
    assert (await broker.history(["job"], before.id)).expired, "a resume from before the end is told of the loss"
    [again] = await broker.publish([draft("job", data="again")])
    assert [m.id for m in (await broker.history(["job"], 0)).messages] == [again.id]
    assert 1000 < await redis.pttl(f"{prefix}:history:job") <= 100_000
