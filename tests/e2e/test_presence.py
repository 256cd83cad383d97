"""Presence with real ``sse-hub`` processes on one Redis: an instance killed with SIGKILL
(no clean leave) drops out of ``/channels/{name}`` and ``/clients/{id}`` within its
directory TTL (in process: tests/redis/test_presence.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from sse_hub.broker.redis.directory import PRESENCE_TTL_MS
from tests.support.brokers import broker_env
from tests.support.http import client_id_of, open_stream
from tests.support.processes import HubProcess
from tests.support.waiting import eventually

TTL_SECONDS = PRESENCE_TTL_MS / 1000


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_an_instance_killed_with_sigkill_drops_out_of_presence_within_its_ttl(
    hub_process: Callable[..., HubProcess], redis_server: str, prefix: str
) -> None:
    env = broker_env("redis", redis_server, prefix)
    a, b = hub_process(env=env), hub_process(env=env)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with open_stream(session, f"{a.url}/events/room"), open_stream(session, f"{b.url}/events/room") as on_b:
            doomed = client_id_of(on_b)

            async def subscribers(count: int) -> bool:
                return (await get_json(session, f"{a.url}/channels/room"))["subscribers"] == count

            await eventually(lambda: subscribers(2), timeout=5)
            assert (await get_json(session, f"{a.url}/clients/{doomed}"))["id"] == doomed
            b.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            await eventually(lambda: subscribers(1), timeout=TTL_SECONDS + 2)
            assert time.monotonic() - killed_at <= TTL_SECONDS + 1, "outlived its directory TTL"
            async with session.get(f"{a.url}/clients/{doomed}") as response:
                assert response.status == 404
                assert (await response.json())["error"] == "unknown_client"
            answer = await get_json(session, f"{a.url}/channels/room?clients=1")
    assert len(answer["instances"]) == 1 and len(answer["clients"]) == 1
