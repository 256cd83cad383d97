"""Several instances on one Redis behave as one hub: first brokers side by side in this
process, then real ``sse-hub`` processes (a fresh key prefix per test)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.message import Message
from tests.conftest import (
    HubProcess,
    StartedBrokers,
    broadcast,
    client_id_of,
    draft,
    eventually,
    free_port,
    make_settings,
    open_stream,
    wait_until,
)

StartBroker = Callable[..., Awaitable[tuple[RedisBroker, list[Message]]]]
HubFactory = Callable[..., HubProcess]
TIMEOUT = 5


@pytest.fixture
async def start_broker(redis_server: str, prefix: str) -> AsyncIterator[StartBroker]:
    """``broker, delivered = await start_broker("a")``: instances sharing one prefix."""
    brokers = StartedBrokers()

    async def start(instance_id: str, history_size: int = 100) -> tuple[RedisBroker, list[Message]]:
        settings = make_settings(
            broker={"backend": "redis", "redis_url": redis_server, "prefix": prefix}, history={"size": history_size}
        )
        return await brokers.start(RedisBroker(settings, instance_id))

    yield start
    await brokers.stop()


# -- brokers side by side ---------------------------------------------------------------


async def test_instances_share_one_sequence_and_receive_the_same_messages_in_order(start_broker: StartBroker) -> None:
    a, delivered_a = await start_broker("a")
    b, delivered_b = await start_broker("b")
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
    start_broker: StartBroker, redis: Redis
) -> None:
    broker, delivered = await start_broker("a")
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


async def test_history_written_through_one_instance_is_read_through_another(start_broker: StartBroker) -> None:
    a, _ = await start_broker("a")
    b, _ = await start_broker("b")
    published = await a.publish([draft("news", data=str(n)) for n in range(3)])
    history = await b.history(["news"], published[0].id)
    assert [message.data for message in history.messages] == ["1", "2"]
    assert history.last_id == published[-1].id


async def test_a_client_connected_to_one_instance_is_known_to_the_others(start_broker: StartBroker) -> None:
    a, _ = await start_broker("a")
    b, _ = await start_broker("b")
    assert not await a.client_exists("c_roaming")
    b.client_connected("c_roaming")
    await eventually(lambda: a.client_exists("c_roaming"))
    b.client_disconnected("c_roaming")

    async def gone() -> bool:
        return not await a.client_exists("c_roaming")

    await eventually(gone)


async def test_cluster_summaries_list_live_instances_and_drop_stopped_ones(start_broker: StartBroker) -> None:
    a, _ = await start_broker("a")
    b, _ = await start_broker("b")
    b.summary_source = lambda: {"instance": "b", "started_at": "now", "total_clients": 2, "channels": {"x": 2}}
    b.client_connected("c_1")  # wakes the upkeep task; the summary itself refreshes periodically

    async def b_reports_its_clients() -> bool:
        summaries = await a.cluster_summaries() or []
        return any(summary["channels"] == {"x": 2} for summary in summaries)

    await eventually(b_reports_its_clients)
    assert [summary["instance"] for summary in await a.cluster_summaries() or []] == ["a", "b"]
    await b.stop()
    assert [summary["instance"] for summary in await a.cluster_summaries() or []] == ["a"]


async def test_malformed_payloads_on_the_message_channel_are_skipped(
    start_broker: StartBroker, redis: Redis, prefix: str
) -> None:
    a, delivered = await start_broker("a")
    await redis.publish(f"{prefix}:ch:*", b"not json")
    await redis.publish(f"{prefix}:ch:*", json.dumps({"id": 99, "event": "a\nb", "data": "", "channels": []}))
    [message] = await a.publish([draft("*")])
    await wait_until(lambda: bool(delivered))
    assert [m.id for m in delivered] == [message.id]
    assert a.connected


async def test_ids_never_go_backwards_when_redis_loses_the_sequence(
    start_broker: StartBroker, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("a")
    b, delivered_b = await start_broker("b")
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
    start_broker: StartBroker, redis: Redis, prefix: str
) -> None:
    a, delivered = await start_broker("a")
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
    start_broker: StartBroker, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("a")
    b, _ = await start_broker("b")
    await a.issue_ticket("secret-ticket", ("news",), 30)
    [key] = [key async for key in redis.scan_iter(match=f"{prefix}:ticket:*")]
    assert b"secret-ticket" not in key, "the key space shows no usable ticket"
    assert 0 < await redis.ttl(key) <= 30
    assert await b.redeem_ticket("secret-ticket") == ("news",)
    assert await a.redeem_ticket("secret-ticket") is None


async def test_start_fails_as_unavailable_when_redis_is_unreachable() -> None:
    settings = make_settings(broker={"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    broker = RedisBroker(settings, "lonely")
    with pytest.raises(BrokerUnavailable):
        await broker.start(lambda message: None)
    assert not broker.connected
    await broker.stop()


# -- real processes ---------------------------------------------------------------------


@pytest.fixture
def start_hubs(hub_process: HubFactory, redis_server: str, prefix: str) -> Callable[[int], list[HubProcess]]:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": prefix,
    }
    return lambda count: [hub_process(env=env) for _ in range(count)]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_messages_published_on_one_instance_reach_every_instance_once_in_order(
    start_hubs: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    hubs = start_hubs(3)
    for hub in hubs:
        async with session.get(f"{hub.url}/readyz") as response:
            assert response.status == 200
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(open_stream(session, f"{hub.url}/events/prices")) for hub in hubs]
        receipts = [await broadcast(session, hubs[0].url, {"channel": "prices", "data": n}) for n in range(10)]
        receipts += await broadcast(session, hubs[0].url, [{"channel": "prices", "data": n} for n in range(10, 20)])
        await broadcast(session, hubs[0].url, {"channel": "elsewhere", "data": "not for them"})
        last = await broadcast(session, hubs[2].url, {"channel": "prices", "data": "last"})
        for stream in streams:
            events = await stream.take(21)
            assert [event.id for event in events] == [receipt["id"] for receipt in [*receipts, last]]
            assert [event.data for event in events] == [*map(str, range(20)), "last"]


async def test_a_client_reconnecting_to_another_instance_replays_what_it_missed(
    start_hubs: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_hubs(2)
    async with open_stream(session, f"{a.url}/events/news") as stream:
        await broadcast(session, a.url, {"channel": "news", "data": "seen"})
        seen = await stream.next_message()
    missed = [await broadcast(session, a.url, {"channel": "news", "data": f"missed {n}"}) for n in range(2)]
    async with open_stream(session, f"{b.url}/events/news", headers={"Last-Event-ID": str(seen.id)}) as stream:
        replayed = await stream.take(2)
        live = await broadcast(session, b.url, {"channel": "news", "data": "live"})
        after = await stream.next()
    assert [event.id for event in replayed] == [receipt["id"] for receipt in missed]
    assert (after.id, after.data) == (live["id"], "live")


async def test_a_direct_message_reaches_a_client_connected_to_another_instance(
    start_hubs: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_hubs(2)
    async with open_stream(session, f"{b.url}/events/inbox") as stream:
        client_id = client_id_of(stream)
        statuses: list[int] = []

        async def delivered_from_a() -> bool:
            # The directory write is batched off the connect path: poll until it landed.
            async with session.post(f"{a.url}/broadcast", json={"client_id": client_id, "data": "psst"}) as response:
                statuses.append(response.status)
                return response.status == 202

        await eventually(delivered_from_a)
        assert set(statuses) <= {202, 404}
        event = await stream.next()
        assert event.data == "psst"
        missing = await broadcast(session, a.url, {"client_id": "c_nobody", "data": "?"}, expect=404)
        assert missing["error"] == "unknown_client"
        await broadcast(
            session, a.url, [{"channel": "inbox", "data": "no"}, {"client_id": "c_nobody", "data": "?"}], expect=404
        )
        await broadcast(session, a.url, {"channel": "inbox", "data": "next"})
        assert (await stream.next()).data == "next", "the refused batch published nothing"


async def test_delete_on_one_instance_disconnects_a_client_connected_to_another(
    start_hubs: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_hubs(2)
    async with (
        open_stream(session, f"{b.url}/events/inbox") as kicked,
        open_stream(session, f"{b.url}/events/inbox") as bystander,
    ):
        client_id = client_id_of(kicked)

        async def deleted_through_a() -> bool:
            # The directory write is batched off the connect path: poll until it landed.
            async with session.delete(f"{a.url}/clients/{client_id}") as response:
                return response.status == 200

        await eventually(deleted_through_a)
        await kicked.read_until_closed(TIMEOUT)
        async with session.delete(f"{a.url}/clients/c_nobody") as response:
            assert response.status == 404
        receipt = await broadcast(session, a.url, {"channel": "inbox", "data": "still here"})
        assert (await bystander.next_message(TIMEOUT)).id == receipt["id"]


async def test_cluster_stats_show_every_live_instance_from_any_of_them(
    start_hubs: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b, c = start_hubs(3)
    ids = {hub.url: (await get_json(session, f"{hub.url}/stats"))["instance"] for hub in (a, b, c)}
    async with contextlib.AsyncExitStack() as stack:
        for hub, channel in ((a, "x"), (a, "x"), (b, "y")):
            await stack.enter_async_context(open_stream(session, f"{hub.url}/events/{channel}"))

        async def cluster_of(expected_instances: set[str], clients: int, channels: dict[str, int]) -> bool:
            stats = await get_json(session, f"{a.url}/stats?scope=cluster")
            instances = {summary["instance"] for summary in stats["instances"]}
            cluster = {"instances": len(expected_instances), "total_clients": clients, "channels": channels}
            return instances == expected_instances and stats["cluster"] == cluster

        await eventually(lambda: cluster_of(set(ids.values()), 3, {"x": 2, "y": 1}))
        assert c.stop() == 0
        await eventually(lambda: cluster_of({ids[a.url], ids[b.url]}, 3, {"x": 2, "y": 1}), timeout=2)
        b.stop(signal.SIGKILL)
        # Nobody removes a killed instance: its summary expires (TTL: three refresh periods).
        await eventually(lambda: cluster_of({ids[a.url]}, 2, {"x": 2}), timeout=10)
