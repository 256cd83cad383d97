"""A Redis outage, for real: this test's own redis-server is killed and restarted empty
on the same port under two running ``sse-hub`` processes. Streams stay open through the
outage; once Redis is back without its data they are ended, and resume with ``reset``."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import aiohttp

from tests.support.http import broadcast, client_id_of, open_stream
from tests.support.processes import HubProcess, RedisProcess
from tests.support.sse_client import EventStream
from tests.support.waiting import eventually

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5
# The broker's reconnect backoff is capped at 5 s: recovery takes at most that, plus a bit.
RECOVERY_TIMEOUT = 10


def status_is(session: aiohttp.ClientSession, url: str, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with session.get(url) as response:
            return response.status == status

    return check


async def heartbeats(stream: EventStream, count: int, timeout: float = TIMEOUT) -> None:
    """Read until ``count`` more comment lines (heartbeats) arrived; no event may arrive."""
    target = len(stream.parser.comments) + count
    async with asyncio.timeout(timeout):
        while len(stream.parser.comments) < target:
            chunk = await stream.response.content.readany()
            if not chunk:
                raise EOFError("the stream ended during the outage")
            assert stream.parser.feed(chunk.decode()) == [], "only heartbeats during the outage"


async def test_a_redis_outage_keeps_streams_open_refuses_publishes_and_resumes_them_with_a_reset(
    own_redis: RedisProcess, hub_process: HubFactory
) -> None:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": own_redis.url,
        "SSE_HUB_BROKER__PREFIX": f"outage-{secrets.token_hex(4)}",
        "SSE_HUB_SSE__HEARTBEAT_SECONDS": "0.3",
    }
    a, b = hub_process(env=env), hub_process(env=env)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        open_stream(session, f"{b.url}/events/news") as stream,
    ):
        client_id = client_id_of(stream)
        before = [await broadcast(session, a.url, {"channel": "news", "data": f"before {n}"}) for n in range(3)]
        assert [event.id for event in await stream.take(3)] == [receipt["id"] for receipt in before]

        own_redis.kill()
        for hub in (a, b):
            await eventually(status_is(session, f"{hub.url}/readyz", 503))
        async with session.post(f"{a.url}/broadcast", json={"channel": "news", "data": "lost"}) as response:
            assert response.status == 503
            assert int(response.headers["Retry-After"]) > 0
            assert (await response.json())["error"] == "broker_unavailable"
        async with session.post(f"{b.url}/broadcast", json=[{"channel": "news", "data": "lost"}] * 2) as response:
            assert response.status == 503
        await heartbeats(stream, 3)
        assert await status_is(session, f"{b.url}/healthz", 200)()
        # A browser reconnecting now must not get a non-200 (EventSource would give up for
        # good): the hub answers 200, sets retry: and ends the stream so it comes back later.
        resume = {"Last-Event-ID": before[-1]["id"]}
        async with session.get(f"{b.url}/events/news", headers=resume) as response:
            assert response.status == 200
            body = await asyncio.wait_for(response.text(), TIMEOUT)
        assert "retry: " in body and "data:" not in body

        own_redis.start()
        for hub in (a, b):
            await eventually(status_is(session, f"{hub.url}/readyz", 200), timeout=RECOVERY_TIMEOUT)
        # Redis came back empty: what other instances published just before the crash may
        # be gone, so the stream is ended and resumes from history, where it is told.
        assert "data:" not in await stream.read_until_closed(RECOVERY_TIMEOUT)
        after = await broadcast(session, a.url, {"channel": "news", "data": "after"})
        assert int(after["id"]) > int(before[-1]["id"]), "ids go on from before the outage"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        open_stream(session, f"{b.url}/events/news", headers={"Last-Event-ID": before[-1]["id"]}) as stream,
    ):
        client_id = client_id_of(stream)
        reset = await stream.next()
        assert (reset.event, reset.json()) == (
            "reset",
            {"reason": "history_expired", "last_event_id": before[-1]["id"]},
        )
        event = await stream.next()
        assert (event.id, event.data) == (after["id"], "after"), "nothing refused or old arrives, nothing twice"

        async def direct_message_accepted() -> bool:
            # b rewrites its client directory after reconnecting, off the publish path.
            async with session.post(f"{a.url}/broadcast", json={"client_id": client_id, "data": "direct"}) as response:
                return response.status == 202

        await eventually(direct_message_accepted)
        event = await stream.next()
        assert event.data == "direct"
        assert int(event.id or 0) > int(after["id"])
    for hub in (a, b):
        assert "redis connection lost" in hub.log()
        assert "redis connection restored" in hub.log()
