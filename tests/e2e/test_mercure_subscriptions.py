"""Mercure's subscription updates with real ``sse-hub`` processes on one Redis: an instance
stopped with SIGTERM announces its subscribers leaving before it exits (the drain, then the
app's cleanup, then the broker); one killed with SIGKILL announces nothing, and its
subscribers leave the list within its directory TTL (docs/mercure.md, "Subscriptions")."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt

from sse_hub.broker.redis.directory import PRESENCE_TTL_MS
from tests.support.brokers import broker_env
from tests.support.processes import HubProcess
from tests.support.sse_client import EventStream
from tests.support.waiting import eventually

SECRET = "!ChangeThisMercureHubJWTSecretKey!"
SUBSCRIPTIONS = "/.well-known/mercure/subscriptions"
TEMPLATE = SUBSCRIPTIONS + "{/topic}{/subscriber}"
BOOK = "https://example.com/books/1"
READER = jwt.encode({"mercure": {"subscribe": [TEMPLATE, SUBSCRIPTIONS]}}, SECRET, algorithm="HS256")
ENV = {
    "SSE_HUB_MERCURE__ENABLED": "true",
    "SSE_HUB_MERCURE__SUBSCRIPTIONS": "true",
    "SSE_HUB_MERCURE__ANONYMOUS": "true",
    "SSE_HUB_MERCURE__PUBLISHER_JWT__SECRET": SECRET,
}


@contextlib.asynccontextmanager
async def subscribe(
    session: aiohttp.ClientSession, hub: HubProcess, topic: str, token: str | None = None
) -> AsyncIterator[EventStream]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    url = f"{hub.url}/.well-known/mercure?{urlencode({'topic': topic})}"
    response = await session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=30))
    try:
        assert response.status == 200, await response.text()
        yield EventStream(response)
    finally:
        response.close()


async def book_update(watcher: EventStream) -> dict[str, Any]:
    """The next subscription update about a subscription to ``BOOK``."""
    while True:
        update = (await watcher.next(timeout=25)).json()
        assert isinstance(update, dict)
        if update["topic"] == BOOK:
            return update


async def test_a_stopped_instance_announces_its_subscribers_leaving_and_a_killed_one_drops_out(
    hub_process: Callable[..., HubProcess], redis_server: str, prefix: str
) -> None:
    env = {**broker_env("redis", redis_server, prefix), **ENV}
    a, b, c = hub_process(env=env), hub_process(env=env), hub_process(env=env)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with subscribe(session, b, TEMPLATE, READER) as watcher:
            async with subscribe(session, a, BOOK):
                connect = await book_update(watcher)
                assert a.stop(signal.SIGTERM) == 0
            disconnect = await book_update(watcher)
            assert (disconnect["subscriber"], disconnect["active"]) == (connect["subscriber"], False)

            async def listed() -> set[str]:
                headers = {"Authorization": f"Bearer {READER}"}
                async with session.get(f"{b.url}{SUBSCRIPTIONS}", headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return {item["subscriber"] for item in (await response.json())["subscriptions"]}

            async with subscribe(session, c, BOOK):
                doomed = (await book_update(watcher))["subscriber"]
                assert doomed in await listed()
                c.stop(signal.SIGKILL)
                killed_at = time.monotonic()
                ttl_seconds = PRESENCE_TTL_MS / 1000
                await eventually(lambda: _absent(listed, doomed), timeout=ttl_seconds + 2)
                assert time.monotonic() - killed_at <= ttl_seconds + 1, "outlived its directory TTL"


async def _absent(listed: Callable[[], Any], subscriber: str) -> bool:
    return subscriber not in await listed()
