"""Presence across instances on one Redis: ``/channels/{name}`` and ``/clients/{id}``
answer for every live instance, page across them, drop an instance that stops refreshing
within its TTL, and answer 503 while Redis is down (one instance: tests/app/test_presence.py)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from sse_hub.broker.redis.directory import PRESENCE_TTL_MS
from sse_hub.web.state import HUB
from tests.support.brokers import broker_env
from tests.support.http import client_id_of, expect_error, open_stream
from tests.support.plugin import HubsFactory
from tests.support.processes import HubProcess, RedisProcess
from tests.support.waiting import eventually, wait_until

TIMEOUT = 5


async def get_json(client: TestClient[Any, Any] | aiohttp.ClientSession, url: str) -> Any:
    async with client.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_channel_on_two_instances_counts_and_lists_the_clients_of_both(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("redis")
    on_a, on_b = a.app[HUB].instance_id, b.app[HUB].instance_id
    async with open_stream(a, "/events/room-7") as first, open_stream(b, "/events?channel=room-7&channel=x") as second:
        expected = {client_id_of(first): on_a, client_id_of(second): on_b}

        async def both_listed() -> bool:
            answer = await get_json(a, "/channels/room-7?clients=1")
            return {entry["id"]: entry["instance"] for entry in answer["clients"]} == expected

        await eventually(both_listed, timeout=TIMEOUT)
        answer = await get_json(b, "/channels/room-7?clients=1")
        remote = await get_json(a, f"/clients/{client_id_of(second)}")
    assert answer["subscribers"] == 2 and answer["instances"] == {on_a: 1, on_b: 1} and answer["next"] is None
    assert remote["instance"] == on_b and remote["channels"] == ["room-7", "x"] and remote["ip"] == "127.0.0.1"
    assert set(remote) == {
        "id",
        "instance",
        "ip",
        "channels",
        "connected_at",
        "last_activity",
        "messages_sent",
        "bytes_sent",
    }


async def test_pages_of_a_channel_merge_the_instances_in_client_id_order(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("redis")
    async with contextlib.AsyncExitStack() as streams:
        ids = [
            client_id_of(await streams.enter_async_context(open_stream(hub, "/events/busy"))) for hub in (a, b, a, b, b)
        ]

        async def all_counted() -> bool:
            return (await get_json(a, "/channels/busy"))["subscribers"] == 5

        await eventually(all_counted, timeout=TIMEOUT)
        seen: list[str] = []
        after = ""
        for _ in range(5):
            page = await get_json(a, f"/channels/busy?clients=1&limit=2{after}")
            seen += [entry["id"] for entry in page["clients"]]
            if page["next"] is None:
                break
            after = f"&after={page['next']}"
    assert seen == sorted(ids)


async def test_a_client_that_left_is_unknown_on_every_instance(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("redis")
    async with open_stream(b, "/events/news") as stream:
        client_id = client_id_of(stream)

        async def found() -> bool:
            return (await a.get(f"/clients/{client_id}")).status == 200

        await eventually(found, timeout=TIMEOUT)

    async def gone() -> bool:
        return (await a.get(f"/clients/{client_id}")).status == 404

    await eventually(gone, timeout=TIMEOUT)
    assert (await get_json(a, "/channels/news"))["subscribers"] == 0


async def test_a_redis_outage_answers_503_broker_unavailable_not_a_stale_success(
    start_hubs: HubsFactory, own_redis: RedisProcess
) -> None:
    [hub] = await start_hubs("redis", 1, url=own_redis.url)
    assert (await get_json(hub, "/channels/x"))["subscribers"] == 0
    own_redis.kill()
    for path in ("/channels/x", "/channels/x?clients=1", "/clients/c_elsewhere"):
        error = await expect_error(await hub.get(path), 503)
        assert error["error"] == "broker_unavailable", path
    await wait_until(lambda: not hub.app[HUB].connected, timeout=TIMEOUT)
    assert (await expect_error(await hub.get("/channels/x"), 503))["error"] == "broker_unavailable"


async def test_an_instance_that_stops_refreshing_drops_out_within_its_ttl(
    hub_process: Callable[..., HubProcess], redis_server: str, prefix: str
) -> None:
    env = broker_env("redis", redis_server, prefix)
    a, b = hub_process(env=env), hub_process(env=env)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async with open_stream(session, f"{b.url}/events/room"):

            async def listed(count: int) -> bool:
                return (await get_json(session, f"{a.url}/channels/room"))["subscribers"] == count

            await eventually(lambda: listed(1), timeout=TIMEOUT)
            b.process.send_signal(signal.SIGSTOP)  # alive, connected, silent: no refresh
            stopped_at = time.monotonic()
            try:
                assert await listed(1), "gone before its TTL"
                await eventually(lambda: listed(0), timeout=PRESENCE_TTL_MS / 1000 + 2)
                assert time.monotonic() - stopped_at <= PRESENCE_TTL_MS / 1000 + 1
                answer = await get_json(session, f"{a.url}/channels/room")
            finally:
                b.process.send_signal(signal.SIGCONT)
    assert len(answer["instances"]) == 1
