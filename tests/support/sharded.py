"""Helpers for the sharded Redis Cluster broker's tests: two brokers on one cluster, each
with the list its ``deliver`` appends to, and reading what they delivered per channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.messages.message import Message
from tests.conftest import StartedBrokers, make_settings


def sharded_settings(url: str, prefix: str, **history: Any) -> Any:
    return make_settings(broker={"backend": "redis-cluster", "redis_url": url, "prefix": prefix}, history=history)


@asynccontextmanager
async def two_brokers(
    url: str, prefix: str, linger_seconds: float = 30.0, **history: Any
) -> AsyncIterator[list[tuple[ShardedClusterBroker, list[Message]]]]:
    started = StartedBrokers()
    settings = sharded_settings(url, prefix, **history)
    try:
        pairs = [
            await started.start(ShardedClusterBroker(settings, f"{prefix}-{n}", linger_seconds=linger_seconds))
            for n in range(2)
        ]
        yield pairs
    finally:
        await started.stop()


def seqs(delivered: Iterable[Message], channel: str) -> list[int]:
    """The seqs ``channel``'s parts were delivered with, in delivery order."""
    return [seq for message in delivered for name, seq, _ in message.pos if name == channel]
