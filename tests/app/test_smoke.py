from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.http import open_stream, publish


async def test_stream_receives_a_published_message(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/demo") as stream:
        receipt = await publish(client, {"channel": "demo", "event": "greet", "data": {"a": 1}})
        event = await stream.next()
    assert (event.id, event.event, event.json()) == (receipt["id"], "greet", {"a": 1})
