"""``sse-hub tail`` across a hub restart in Redis mode: what was published to another
instance while its hub was down is replayed from Redis history when tail reconnects
with Last-Event-ID, so it prints every message exactly once, in order."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from sse_hub.client import Publisher, Receipt
from tests.support.cli import start_tail
from tests.support.processes import HubProcess

HubStarter = Callable[..., HubProcess]


async def publish_all(url: str, channel: str, texts: list[str]) -> list[Receipt]:
    async with Publisher(url) as publisher:
        return [await publisher.publish(text, channels=[channel]) for text in texts]


def printed(receipt: Receipt, text: str) -> str:
    return f"[{receipt['id']}] message: {text}\n"


async def test_tail_survives_a_hub_restart_without_losing_messages_in_redis_mode(
    hub_process: HubStarter, redis_server: str
) -> None:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": f"cli-redis-{secrets.token_hex(4)}",
        # A stopping hub asks streams back after max(retry_ms, 1 s) x 1..3.
        "SSE_HUB_SSE__RETRY_MS": "200",
    }
    channel = "news"
    hub_a = hub_process(env=env)
    hub_b = hub_process(env=env)
    sent: list[tuple[Receipt, str]] = []

    async with start_tail("--url", hub_a.url, channel) as tail:
        await tail.note("connected")
        before = [f"before-{n}" for n in range(3)]
        sent += zip(await publish_all(hub_a.url, channel, before), before, strict=True)
        # Published to B, seen live by A's stream through Redis.
        live_from_b = ["live-from-b"]
        sent += zip(await publish_all(hub_b.url, channel, live_from_b), live_from_b, strict=True)
        printed_before = [await tail.line() for _ in sent]
        assert printed_before == [printed(receipt, text) for receipt, text in sent]

        assert await asyncio.to_thread(hub_a.stop) == 0
        await tail.note("reconnecting")
        # A is down: only Redis history keeps these for tail.
        while_down = [f"while-down-{n}" for n in range(5)]
        sent += zip(await publish_all(hub_b.url, channel, while_down), while_down, strict=True)

        hub_a = hub_process(env=env, port=hub_a.port)
        await tail.note("connected", timeout=30)
        after = ["after-on-a"]
        sent += zip(await publish_all(hub_a.url, channel, after), after, strict=True)
        after_b = ["after-on-b"]
        sent += zip(await publish_all(hub_b.url, channel, after_b), after_b, strict=True)

        printed_after = [await tail.line() for _ in range(len(sent) - len(printed_before))]
        # A last message proves nothing else (a duplicate, a reset) was printed in between.
        sentinel = await publish_all(hub_b.url, channel, ["sentinel"])
        assert await tail.line() == printed(sentinel[0], "sentinel")

    assert printed_before + printed_after == [printed(receipt, text) for receipt, text in sent]
    ids = [int(receipt["id"]) for receipt, _ in sent]
    assert ids == sorted(set(ids))
