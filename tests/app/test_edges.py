"""The edges of one instance: a replay bounded by what the client drains, the stall rule,
counters that agree, HEAD and tickets, and a /stats answer of bounded size."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from sse_hub.core.subscriber import REPLAY_WINDOW_BYTES, Subscriber
from sse_hub.web.state import HUB
from sse_hub.web.stats import MAX_LISTED_CLIENTS
from tests.support.http import HubClientFactory, get_stats, open_stream, publish, stalled_subscriber
from tests.support.waiting import wait_until

TIMEOUT = 10
BIG = "b" * 16_000  # one retained message of about 16 KB
HISTORY = 300  # 300 x 16 KB: a replay of about 4.8 MB


async def fill_history(client: TestClient[Any, Any], channel: str, count: int = HISTORY) -> list[str]:
    return [(await publish(client, {"channel": channel, "data": BIG}))["id"] for _ in range(count)]


def only_subscriber(client: TestClient[Any, Any]) -> Subscriber:
    (subscriber,) = client.server.app[HUB].registry.all()
    return subscriber


async def test_a_replay_to_a_client_that_reads_nothing_pins_no_more_than_the_window(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(sse={"heartbeat_seconds": 0.3}, limits={"stall_seconds": 1})
    await fill_history(client, "big")
    hub = client.server.app[HUB]
    peak = 0

    def closed_as_slow() -> bool:
        nonlocal peak
        for subscriber in hub.registry.all():
            peak = max(peak, subscriber.buffered_bytes)
        return hub.counters.slow_disconnects == 1

    with stalled_subscriber(client, "/events/big", last_event_id="0"):
        await wait_until(lambda: len(hub.registry) == 1, TIMEOUT)
        subscriber = only_subscriber(client)
        await wait_until(closed_as_slow, TIMEOUT)
    assert subscriber.close_reason == "slow", "closed by the stall rule, not by the buffer limit"
    assert 0 < subscriber.messages_sent < HISTORY, "only what the socket took was handed over"
    assert peak <= REPLAY_WINDOW_BYTES + len(BIG) + 100


async def test_a_client_that_reads_gets_a_long_replay_in_order_then_live_messages(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"client_buffer_bytes": 256 * 1024})
    ids = await fill_history(client, "long")
    async with open_stream(client, "/events/long", headers={"Last-Event-ID": "0"}) as stream:
        live = (await publish(client, {"channel": "long", "data": "live"}))["id"]
        received = [event.id for event in await stream.take(HISTORY + 1, TIMEOUT)]
        assert received == [*ids, live]
        stats = await get_stats(client)
        (entry,) = stats["clients"]
        assert entry["messages_sent"] == HISTORY + 1
        assert stats["messages_delivered"] == HISTORY + 1, "replayed messages count hub-wide too"
    await wait_until(lambda: not len(client.server.app[HUB].registry), TIMEOUT)
    assert (await get_stats(client))["messages_delivered"] == HISTORY + 1, "a departed client's count stays"


async def test_hub_and_client_counters_agree_when_a_resume_overlaps_live_messages(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client()
    first = (await publish(client, {"channel": "c", "data": "1"}))["id"]
    await publish(client, {"channel": "c", "data": "2"})
    async with (
        open_stream(client, "/events/c", headers={"Last-Event-ID": first}) as resumed,
        open_stream(client, "/events/c") as fresh,
    ):
        await publish(client, {"channel": "c", "data": "3"})
        assert [event.data for event in await resumed.take(2, TIMEOUT)] == ["2", "3"]
        assert (await fresh.next(TIMEOUT)).data == "3"
        stats = await get_stats(client)
        assert stats["messages_delivered"] == sum(entry["messages_sent"] for entry in stats["clients"]) == 3


def subscriber_token(secret: str, channels: list[str]) -> str:
    return jwt.encode({"channels": channels}, secret, algorithm="HS256")


async def test_head_on_a_stream_url_leaves_a_one_time_ticket_unused(hub_client: HubClientFactory) -> None:
    secret = "s" * 32
    client = await hub_client(auth={"publish_tokens": ["pub"], "subscriber_jwt": {"secret": secret}})
    response = await client.post("/tickets", json={"channels": ["t"]}, headers={"Authorization": "Bearer pub"})
    assert response.status == 201, await response.text()
    ticket = (await response.json())["ticket"]
    head = await client.head(f"/events/t?ticket={ticket}")
    assert head.status == 200
    assert head.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    async with open_stream(client, f"/events/t?ticket={ticket}"):
        pass
    again = await client.get(f"/events/t?ticket={ticket}")
    assert again.status == 401, "the GET used the ticket up"
    again.close()


async def test_head_still_checks_a_subscriber_token(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"subscriber_jwt": {"secret": "s" * 32}})
    assert (await client.head("/events/t")).status == 401
    token = subscriber_token("s" * 32, ["t"])
    assert (await client.head("/events/t", headers={"Authorization": f"Bearer {token}"})).status == 200


async def test_stats_lists_at_most_a_thousand_clients_and_counts_them_all(hub_client: HubClientFactory) -> None:
    total = MAX_LISTED_CLIENTS + 5
    client = await hub_client(limits={"max_connections_per_ip": total + 10, "max_connections": total + 10})
    hub = client.server.app[HUB]
    writers = []
    try:
        for _ in range(total):
            _, writer = await asyncio.open_connection(str(client.host), int(client.port))
            writer.write(b"GET /events/many HTTP/1.1\r\nHost: localhost\r\n\r\n")
            writers.append(writer)
        await wait_until(lambda: len(hub.registry) == total, 30)
        stats = await get_stats(client)
        assert stats["total_clients"] == total
        assert len(stats["clients"]) == MAX_LISTED_CLIENTS
        assert len((await get_stats(client, "?limit=3"))["clients"]) == 3
        assert len((await get_stats(client, f"?limit={total}"))["clients"]) == MAX_LISTED_CLIENTS
    finally:
        for writer in writers:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)


async def test_a_stalled_live_stream_is_closed_as_slow_before_its_buffer_fills(hub_client: HubClientFactory) -> None:
    buffer_bytes = 256 * 1024
    client = await hub_client(
        sse={"heartbeat_seconds": 0.3}, limits={"stall_seconds": 1, "client_buffer_bytes": buffer_bytes}
    )
    hub = client.server.app[HUB]
    with stalled_subscriber(client, "/events/live"):
        await wait_until(lambda: len(hub.registry) == 1, TIMEOUT)
        subscriber = only_subscriber(client)
        # More than the kernel's send buffer (SO_SNDBUF is set to client_buffer_bytes, which
        # Linux doubles) takes, but less than that plus the buffer limit: bytes wait in the
        # hub, within the limit, and the client reads none of them.
        for _ in range(2 * buffer_bytes // len(BIG) + 4):
            await publish(client, {"channel": "live", "data": BIG})
        assert 0 < subscriber.buffered_bytes <= buffer_bytes
        await wait_until(lambda: subscriber.close_reason is not None, TIMEOUT)
    assert subscriber.close_reason == "slow"
    assert hub.counters.slow_disconnects == 1
