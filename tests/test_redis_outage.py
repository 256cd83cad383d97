"""A Redis outage, for real: this test's own redis-server is killed and restarted empty
on the same port under two running ``sse-hub`` processes."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import HubProcess, free_port, open_stream, require_binary, wait_for_port
from tests.sse_client import EventStream

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5
# The broker's reconnect backoff is capped at 5 s: recovery takes at most that, plus a bit.
RECOVERY_TIMEOUT = 10


class RedisProcess:
    """A redis-server this test owns: no persistence, so a restart comes back empty."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(require_binary("redis-server", "redis-server"), free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


def status_is(session: aiohttp.ClientSession, url: str, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with session.get(url) as response:
            return response.status == status

    return check


async def post(session: aiohttp.ClientSession, hub: HubProcess, body: object, expect: int = 202) -> Any:
    async with session.post(f"{hub.url}/broadcast", json=body) as response:
        payload = await response.json()
        assert response.status == expect, payload
        return payload


async def heartbeats(stream: EventStream, count: int, timeout: float = TIMEOUT) -> None:
    """Read until ``count`` more comment lines (heartbeats) arrived; no event may arrive."""
    target = len(stream.parser.comments) + count
    async with asyncio.timeout(timeout):
        while len(stream.parser.comments) < target:
            chunk = await stream.response.content.readany()
            if not chunk:
                raise EOFError("the stream ended during the outage")
            assert stream.parser.feed(chunk.decode()) == [], "only heartbeats during the outage"


async def test_a_redis_outage_keeps_streams_open_refuses_publishes_and_recovers_without_duplicates(
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
        client_id = json.loads(stream.parser.events[0].data)["client_id"]
        before = [await post(session, a, {"channel": "news", "data": f"before {n}"}) for n in range(3)]
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
        after = await post(session, a, {"channel": "news", "data": "after"})
        assert int(after["id"]) > int(before[-1]["id"]), "ids go on from before the outage"
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
