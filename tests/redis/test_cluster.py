"""Several instances on one Redis behave as one hub: brokers side by side in this process
(a fresh key prefix per test; real ``sse-hub`` processes: tests/e2e/test_cluster.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.message import Message
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.processes import HubProcess, free_port
from tests.support.settings import make_settings
from tests.support.waiting import eventually, wait_until

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5


# -- brokers side by side ---------------------------------------------------------------


async def test_instances_share_one_sequence_and_receive_the_same_messages_in_order(start_broker: BrokerFactory) -> None:
    a, delivered_a = await start_broker("redis", "a")
    b, delivered_b = await start_broker("redis", "b")
    for broker in (a, b):
        await broker.attach(["x", "y"])
    batches = await asyncio.gather(*(broker.publish([draft("x"), draft("y")]) for broker in (a, b) * 10))
    published = sorted(message.id for batch in batches for message in batch)
    assert len(set(published)) == 40
    await wait_until(lambda: len(delivered_a) == len(delivered_b) == 40)
    assert [m.id for m in delivered_a] == [m.id for m in delivered_b] == published


async def script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def test_concurrent_publishes_share_one_script_call_and_keep_their_order(
    start_broker: BrokerFactory, redis: Redis
) -> None:
    broker, delivered = await start_broker("redis", "a")
    await broker.attach(["g"])
    before = await script_calls(redis)
    results = await asyncio.gather(
        *(broker.publish([draft("g", data=f"{n}a"), draft("g", data=f"{n}b")]) for n in range(20))
    )
    # One group; the broker's own presence script may run meanwhile. Without grouping: 20.
    assert await script_calls(redis) - before <= 3, "20 concurrent publishes went out as one group"
    for n, messages in enumerate(results):
        assert [message.data for message in messages] == [f"{n}a", f"{n}b"]
    ids = [message.id for messages in results for message in messages]
    assert ids == sorted(ids) and len(set(ids)) == 40
    await wait_until(lambda: len(delivered) >= 40)
    assert [message.id for message in delivered] == ids


async def test_history_written_through_one_instance_is_read_through_another(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, _ = await start_broker("redis", "b")
    published = await a.publish([draft("news", data=str(n)) for n in range(3)])
    history = await b.history(["news"], published[0].id)
    assert [message.data for message in history.messages] == ["1", "2"]
    assert history.last_id == published[-1].id


async def test_a_client_connected_to_one_instance_is_known_to_the_others(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, _ = await start_broker("redis", "b")
    assert not await a.directory.client_exists("c_roaming")
    b.directory.client_connected("c_roaming")
    await eventually(lambda: a.directory.client_exists("c_roaming"))
    b.directory.client_disconnected("c_roaming")

    async def gone() -> bool:
        return not await a.directory.client_exists("c_roaming")

    await eventually(gone)


async def test_cluster_summaries_list_live_instances_and_drop_stopped_ones(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, _ = await start_broker(
        "redis", "b", describe=lambda: {"instance": "b", "started_at": "now", "total_clients": 2, "channels": {"x": 2}}
    )
    b.directory.client_connected("c_1")  # wakes the upkeep task; the summary itself refreshes periodically

    async def b_reports_its_clients() -> bool:
        summaries = await a.directory.cluster_summaries() or []
        return any(summary["channels"] == {"x": 2} for summary in summaries)

    await eventually(b_reports_its_clients)
    assert [summary["instance"] for summary in await a.directory.cluster_summaries() or []] == ["a", "b"]
    await b.stop()
    assert [summary["instance"] for summary in await a.directory.cluster_summaries() or []] == ["a"]


async def test_malformed_payloads_on_the_message_channel_are_skipped(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, delivered = await start_broker("redis", "a")
    await redis.publish(f"{prefix}:ch:*", b"not json")
    await redis.publish(f"{prefix}:ch:*", json.dumps({"id": 99, "event": "a\nb", "data": "", "channels": []}))
    [message] = await a.publish([draft("*")])
    await wait_until(lambda: bool(delivered))
    assert [m.id for m in delivered] == [message.id]
    assert a.connected


async def test_ids_never_go_backwards_when_redis_loses_the_sequence(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered_b = await start_broker("redis", "b")
    await b.attach(["x"])
    published = await a.publish([draft("x") for _ in range(3)])
    await wait_until(lambda: len(delivered_b) == 3)
    await redis.delete(f"{prefix}:seq")
    [from_b] = await b.publish([draft("x")])
    assert from_b.id > published[-1].id, "b only received the first three, and still knows their ids"
    await redis.delete(f"{prefix}:seq")
    [from_a] = await a.publish([draft("x")])
    assert from_a.id > from_b.id


async def test_messages_missed_while_unsubscribed_are_recovered_from_history(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, delivered = await start_broker("redis", "a")
    await a.attach(["news"])
    [before] = await a.publish([draft("news")])
    await wait_until(lambda: len(delivered) == 1)
    # A message stored and numbered but never seen on the subscription, as if published
    # while this instance's subscriber connection was down.
    missed_id = int(await redis.incr(f"{prefix}:seq"))
    missed = Message(id=missed_id, event="message", data="missed", channels=("news",))
    await redis.xadd(f"{prefix}:history:news", {"m": missed.to_payload()}, id=f"{missed_id}-0")
    subscriber = [c for c in await redis.client_list() if c["name"] == "sse-hub:a" and "P" in c["flags"]]
    assert len(subscriber) == 1
    await redis.client_kill_filter(_id=subscriber[0]["id"])
    await wait_until(lambda: a.reconnects == 1 and a.connected)
    [after] = await a.publish([draft("news")])
    await wait_until(lambda: len(delivered) == 3)
    assert [(m.id, m.data) for m in delivered] == [(before.id, "x"), (missed_id, "missed"), (after.id, "x")]


async def test_a_ticket_issued_on_one_instance_is_redeemed_once_on_any_other(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    b, _ = await start_broker("redis", "b")
    await a.tickets.issue("secret-ticket", ("news",), 30)
    [key] = [key async for key in redis.scan_iter(match=f"{prefix}:ticket:*")]
    assert b"secret-ticket" not in key, "the key space shows no usable ticket"
    assert 0 < await redis.ttl(key) <= 30
    assert await b.tickets.redeem("secret-ticket") == ("news",)
    assert await a.tickets.redeem("secret-ticket") is None


async def test_start_fails_as_unavailable_when_redis_is_unreachable() -> None:
    settings = make_settings(broker={"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    broker = RedisBroker(settings, "lonely")
    with pytest.raises(BrokerUnavailable):
        await broker.start(lambda message: None)
    assert not broker.connected
    await broker.stop()
