"""Presence on the sharded Redis Cluster: its broker keeps the same ``Directory`` (under
one hash tag), so ``/channels/{name}`` and ``/clients/{id}`` answer across instances there
too (one Redis: tests/redis/test_presence.py)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.support.http import client_id_of, open_stream
from tests.support.plugin import HubsFactory
from tests.support.waiting import eventually


async def get_json(client: TestClient[Any, Any], path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_presence_on_the_sharded_cluster_lists_the_clients_of_every_instance(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("sharded")
    on_a, on_b = a.app[HUB].instance_id, b.app[HUB].instance_id
    async with open_stream(a, "/events/room-7") as first, open_stream(b, "/events/room-7") as second:
        expected = {client_id_of(first): on_a, client_id_of(second): on_b}

        async def both_listed() -> bool:
            answer = await get_json(b, "/channels/room-7?clients=1")
            return {entry["id"]: entry["instance"] for entry in answer["clients"]} == expected

        await eventually(both_listed, timeout=10)
        counted = await get_json(a, "/channels/room-7")
        remote = await get_json(a, f"/clients/{client_id_of(second)}")
    assert counted["subscribers"] == 2 and counted["instances"] == {on_a: 1, on_b: 1}
    assert remote["instance"] == on_b and remote["channels"] == ["room-7"]
