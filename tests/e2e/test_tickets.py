"""One-time tickets across two real ``sse-hub`` processes on one Redis: issued on one, redeemed
once on the other, never logged (tickets through the app: tests/app/test_tickets.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import aiohttp

from tests.support.processes import HubProcess
from tests.support.tokens import PUBLISH, SECRET, bearer

HubFactory = Callable[..., HubProcess]


TIMEOUT = 5


async def test_a_ticket_issued_on_one_instance_opens_one_stream_on_another(
    hub_process: HubFactory, redis_server: str
) -> None:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": f"tickets-{secrets.token_hex(4)}",
        "SSE_HUB_AUTH__PUBLISH_TOKENS": PUBLISH,
        "SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET": SECRET,
    }
    a, b = hub_process(env=env), hub_process(env=env)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=TIMEOUT)) as session:
        async with session.post(
            f"{a.url}/tickets", json={"channels": ["news"], "ttl_seconds": 30}, headers=bearer(PUBLISH)
        ) as response:
            payload = await response.json()
            assert response.status == 201, payload
        ticket = payload["ticket"]
        async with session.get(f"{b.url}/events/news?ticket={ticket}") as stream:
            assert stream.status == 200, await stream.text()
            assert b"event: connected" in await stream.content.readuntil(b"\n\n")
            for hub in (a, b):
                async with session.get(f"{hub.url}/events/news?ticket={ticket}") as again:
                    assert again.status == 401, await again.text()
        for hub in (a, b):
            async with session.get(f"{hub.url}/events/news") as without:
                assert without.status == 401
    for hub in (a, b):
        assert await asyncio.to_thread(hub.stop) == 0
        assert ticket not in hub.log()
    assert "ticket=[redacted]" in a.log() + b.log()
