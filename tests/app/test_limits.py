"""Limits: connection caps (503 + Retry-After, 429), the bounded per-client buffer that
disconnects a slow client without slowing the others, and client addresses behind
trusted proxies."""

from __future__ import annotations

import asyncio

import pytest

from sse_hub.web.client_address import ClientAddress
from sse_hub.web.state import HUB
from tests.support.http import (
    HubClientFactory,
    client_id_of,
    get_stats,
    open_stream,
    publish,
    publish_until_dropped,
    stalled_subscriber,
)
from tests.support.waiting import wait_until

# -- connection caps --------------------------------------------------------------------


async def test_over_max_connections_is_503_with_retry_after(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections": 2})
    async with open_stream(client, "/events/a"), open_stream(client, "/events/b"):
        response = await client.get("/events/a")
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert response.content_type == "application/json"
        assert set(await response.json()) == {"error", "detail"}
        assert (await get_stats(client))["total_clients"] == 2


async def test_a_freed_connection_slot_can_be_used_again(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections": 1})
    hub = client.server.app[HUB]
    for _ in range(3):
        async with open_stream(client, "/events/a"):
            assert (await client.get("/events/a")).status == 503
        await wait_until(lambda: len(hub.registry) == 0)


async def test_over_max_connections_per_ip_is_429(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections_per_ip": 2})
    async with open_stream(client, "/events/a"), open_stream(client, "/events/a"):
        response = await client.get("/events/a")
        assert response.status == 429
        assert response.content_type == "application/json"
        assert set(await response.json()) == {"error", "detail"}
        assert (await get_stats(client))["total_clients"] == 2


async def test_refused_streams_do_not_count_against_the_limits(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections": 1})
    async with open_stream(client, "/events/a"):
        for _ in range(5):
            assert (await client.get("/events/a")).status == 503
    hub = client.server.app[HUB]
    await wait_until(lambda: len(hub.registry) == 0)
    async with open_stream(client, "/events/a"):
        pass


# -- slow clients -----------------------------------------------------------------------


async def test_a_client_that_stops_reading_is_disconnected_and_others_get_everything(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"client_buffer_bytes": 65536})
    hub = client.server.app[HUB]
    payload = "x" * 32_000
    count = 64  # 2 MB in all: far over the stalled client's buffer and socket buffers

    async with open_stream(client, "/events/feed") as fast:
        fast_id = client_id_of(fast)
        with stalled_subscriber(client, "/events/feed"):
            await wait_until(lambda: len(hub.registry) == 2)
            (slow_id,) = [subscriber.client_id for subscriber in hub.registry if subscriber.client_id != fast_id]

            async def publisher() -> list[str]:
                return [
                    (await publish(client, {"channel": "feed", "data": f"{n}:{payload}"}))["id"] for n in range(count)
                ]

            task = asyncio.create_task(publisher())
            try:
                received = [await fast.next(timeout=10) for _ in range(count)]
                ids = await task
            finally:
                task.cancel()
            await wait_until(lambda: hub.registry.get(slow_id) is None)
            stats = await get_stats(client)

    assert [event.id for event in received] == ids
    assert [event.data.split(":", 1)[0] for event in received] == [str(n) for n in range(count)]
    assert all(event.data.endswith(payload) for event in received)
    assert stats["slow_disconnects"] == 1
    assert [entry["id"] for entry in stats["clients"]] == [fast_id]
    assert stats["clients"][0]["messages_sent"] == count


async def test_a_slow_client_can_reconnect_and_replay_what_it_missed(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"client_buffer_bytes": 65536})
    hub = client.server.app[HUB]
    payload = "y" * 32_000
    with stalled_subscriber(client, "/events/feed"):
        await wait_until(lambda: len(hub.registry) == 1)
        ids = [(await publish(client, {"channel": "feed", "data": payload}))["id"] for _ in range(20)]
        await wait_until(lambda: len(hub.registry) == 0)
    assert hub.counters.slow_disconnects == 1
    async with open_stream(client, "/events/feed", headers={"Last-Event-ID": "0"}) as stream:
        assert [event.id for event in await stream.take(20)] == ids


async def test_a_client_that_stops_reading_during_a_large_replay_is_still_disconnected(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"client_buffer_bytes": 65536})
    hub = client.server.app[HUB]
    payload = "z" * 32_000
    for _ in range(20):
        await publish(client, {"channel": "feed", "data": payload})
    with stalled_subscriber(client, "/events/feed", last_event_id="0"):
        await wait_until(lambda: len(hub.registry) == 1)
        await publish_until_dropped(client, {"channel": "feed", "data": payload})
    assert hub.counters.slow_disconnects == 1


# -- trusted proxies --------------------------------------------------------------------

PROXY_CASES = {
    "untrusted peer: headers ignored": ([], {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.1"),
    "untrusted peer: X-Real-IP ignored": ([], {"X-Real-IP": "203.0.113.7"}, "127.0.0.1"),
    "other proxy trusted, not the peer": (["10.0.0.1"], {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.1"),
    "trusted peer: one hop": (["127.0.0.1"], {"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
    "trusted CIDR": (["127.0.0.0/8"], {"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
    "a spoofed entry left of the real client": (
        ["127.0.0.1"],
        {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"},
        "203.0.113.7",
    ),
    "right-most untrusted after trusted hops": (
        ["127.0.0.1", "10.0.0.0/8"],
        {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.0.0.5, 10.1.2.3"},
        "203.0.113.7",
    ),
    "every entry trusted: the left-most": (
        ["127.0.0.1", "10.0.0.0/8"],
        {"X-Forwarded-For": "10.0.0.9, 10.0.0.5"},
        "10.0.0.9",
    ),
    "X-Forwarded-For wins over X-Real-IP": (
        ["127.0.0.1"],
        {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "198.51.100.1"},
        "203.0.113.7",
    ),
    "X-Real-IP when no X-Forwarded-For": (["127.0.0.1"], {"X-Real-IP": "198.51.100.1"}, "198.51.100.1"),
    "no header: the peer": (["127.0.0.1"], {}, "127.0.0.1"),
    "IPv6 client": (["127.0.0.1"], {"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1"),
    "spaces around entries": (["127.0.0.1"], {"X-Forwarded-For": " 6.6.6.6 ,  203.0.113.7 "}, "203.0.113.7"),
}


@pytest.mark.parametrize(("trusted", "headers", "expected"), PROXY_CASES.values(), ids=PROXY_CASES.keys())
async def test_the_client_address_follows_the_trusted_proxy_rules(
    hub_client: HubClientFactory, trusted: list[str], headers: dict[str, str], expected: str
) -> None:
    client = await hub_client(server={"trusted_proxies": trusted})
    async with open_stream(client, "/events/a", headers=headers):
        (entry,) = (await get_stats(client))["clients"]
    assert entry["ip"] == expected


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("::ffff:127.0.0.1", "203.0.113.7"),
        ("::ffff:10.1.2.3", "203.0.113.7"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("::1", "::1"),
    ],
)
def test_an_ipv4_mapped_peer_matches_ipv4_trusted_proxies(peer: str, expected: str) -> None:
    # What a dual-stack listener (host "::") reports for IPv4 peers.
    addresses = ClientAddress(["127.0.0.1", "10.0.0.0/8"])
    assert addresses.resolve(peer, "203.0.113.7", None) == expected


async def test_the_per_ip_limit_counts_forwarded_addresses(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"trusted_proxies": ["127.0.0.1"]}, limits={"max_connections_per_ip": 1})
    first, second = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    async with open_stream(client, "/events/a", headers=first), open_stream(client, "/events/a", headers=second):
        response = await client.get("/events/a", headers=first)
        assert response.status == 429
        ips = sorted(entry["ip"] for entry in (await get_stats(client))["clients"])
    assert ips == ["203.0.113.1", "203.0.113.2"]


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_ip_limit(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"max_connections_per_ip": 1})
    async with open_stream(client, "/events/a", headers={"X-Forwarded-For": "203.0.113.1"}):
        response = await client.get("/events/a", headers={"X-Forwarded-For": "203.0.113.2"})
        assert response.status == 429
