"""Presence on one instance (the memory broker): ``GET /channels/{name}``,
``GET /clients/{id}`` and ``/stats?channel=&after=`` pages, through the real app.
Across instances: tests/redis/test_presence.py."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, client_id_of, expect_error, get_stats, open_stream, publish

ADMIN = "admin-token-for-presence"


async def get_json(client: TestClient[Any, Any], path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_channel_nobody_holds_has_no_subscribers(client: TestClient[Any, Any]) -> None:
    answer = await get_json(client, "/channels/empty")
    assert answer == {"channel": "empty", "subscribers": 0, "instances": {client.app[HUB].instance_id: 0}}


async def test_a_channel_counts_its_streams_and_lists_its_clients_with_their_details(
    client: TestClient[Any, Any],
) -> None:
    instance = client.app[HUB].instance_id
    async with (
        open_stream(client, "/events?channel=room-7&channel=other") as first,
        open_stream(client, "/events/room-7") as second,
        open_stream(client, "/events/other"),
    ):
        await publish(client, {"channel": "room-7", "data": "hi"})
        await first.next()
        await second.next()
        answer = await get_json(client, "/channels/room-7?clients=1")
    assert answer["subscribers"] == 2
    assert answer["instances"] == {instance: 2}
    assert answer["next"] is None
    listed = {entry["id"]: entry for entry in answer["clients"]}
    assert sorted(listed) == sorted([client_id_of(first), client_id_of(second)])
    entry = listed[client_id_of(first)]
    assert set(entry) == {"id", "instance", "ip", "channels", "connected_at", "messages_sent"}
    assert entry["instance"] == instance and entry["ip"] == "127.0.0.1"
    assert entry["channels"] == ["room-7", "other"] and entry["messages_sent"] == 1


async def test_clients_of_a_channel_come_in_pages_that_follow_next(client: TestClient[Any, Any]) -> None:
    async with contextlib.AsyncExitStack() as streams:
        ids = [client_id_of(await streams.enter_async_context(open_stream(client, "/events/busy"))) for _ in range(5)]
        seen: list[str] = []
        after = ""
        for _ in range(5):
            page = await get_json(client, f"/channels/busy?clients=1&limit=2{after}")
            assert page["subscribers"] == 5 and len(page["clients"]) <= 2
            seen += [entry["id"] for entry in page["clients"]]
            if page["next"] is None:
                break
            after = f"&after={page['next']}"
    assert seen == sorted(ids)


async def test_counts_alone_list_no_clients(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/quiet"):
        answer = await get_json(client, "/channels/quiet")
    assert answer["subscribers"] == 1 and "clients" not in answer and "next" not in answer


async def test_a_client_is_found_by_its_id_with_its_counters(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        await publish(client, {"channel": "news", "data": "hello"})
        await stream.next()
        answer = await get_json(client, f"/clients/{client_id_of(stream)}")
    assert answer["id"] == client_id_of(stream) and answer["instance"] == client.app[HUB].instance_id
    assert answer["channels"] == ["news"] and answer["messages_sent"] == 1 and answer["bytes_sent"] > 0
    assert answer["last_activity"] >= answer["connected_at"]


async def test_an_unknown_client_is_404_unknown_client(client: TestClient[Any, Any]) -> None:
    error = await expect_error(await client.get("/clients/c_nobody"), 404)
    assert error["error"] == "unknown_client"


async def test_stats_filters_by_channel_and_pages_past_its_limit(client: TestClient[Any, Any]) -> None:
    async with contextlib.AsyncExitStack() as streams:
        on_a = [client_id_of(await streams.enter_async_context(open_stream(client, "/events/a"))) for _ in range(3)]
        await streams.enter_async_context(open_stream(client, "/events/b"))
        first = await get_stats(client, "?channel=a&limit=2")
        second = await get_stats(client, f"?channel=a&limit=2&after={first['next']}")
        unfiltered = await get_stats(client, "?limit=3")
    assert [entry["id"] for entry in first["clients"] + second["clients"]] == sorted(on_a)
    assert second["next"] is None
    assert first["total_clients"] == 4 and len(unfiltered["clients"]) == 3 and unfiltered["next"] is not None


async def test_presence_needs_the_admin_token_like_stats(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": [ADMIN]})
    for path in ("/channels/x", "/clients/c_1"):
        assert (await expect_error(await client.get(path), 401))["error"] == "unauthorized"
    response = await client.get("/channels/x", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 200


async def test_presence_refuses_invalid_queries(client: TestClient[Any, Any]) -> None:
    for path in ("/channels/bad%20name", "/channels/x?clients=yes", "/channels/x?clients=1&limit=-1", "/stats?after="):
        await expect_error(await client.get(path), 400)
