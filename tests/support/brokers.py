"""Brokers without the app: the kinds a test can ask for (``memory``, ``redis``,
``redis-cluster`` in one-slot mode, ``sharded``), the settings and environment that name
each, a plain draft, and what the ``start_broker`` fixture uses to start and stop them."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

import pytest

from sse_hub.broker.memory import MemoryBroker
from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.one_slot import RedisClusterBroker
from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.config.settings import Settings
from sse_hub.messages.contract import Broker
from sse_hub.messages.message import Draft, Message

BrokerKind = Literal["memory", "redis", "redis-cluster", "sharded"]
BROKER_KINDS: tuple[BrokerKind, ...] = get_args(BrokerKind)
# The kinds the Broker contract holds for (``@ON_EVERY_BROKER`` on a test that takes the
# ``start_broker`` fixture: one test per kind, ``kind`` left out of each call).
CONTRACT_KINDS: tuple[BrokerKind, ...] = ("memory", "redis", "redis-cluster")
ON_EVERY_BROKER = pytest.mark.parametrize("start_broker", CONTRACT_KINDS, indirect=True)


def broker_section(kind: BrokerKind, url: str = "", prefix: str = "") -> dict[str, Any]:
    """The ``broker`` section of the settings for ``kind``, on ``url`` under ``prefix``."""
    if kind == "memory":
        return {"backend": "memory"}
    if kind == "redis":
        return {"backend": "redis", "redis_url": url, "prefix": prefix}
    mode = "one-slot" if kind == "redis-cluster" else "sharded"
    return {"backend": "redis-cluster", "cluster_mode": mode, "redis_url": url, "prefix": prefix}


def broker_env(kind: BrokerKind, url: str = "", prefix: str = "") -> dict[str, str]:
    """``broker_section`` as the environment of an ``sse-hub`` process."""
    return {f"SSE_HUB_BROKER__{key.upper()}": value for key, value in broker_section(kind, url, prefix).items()}


def draft(*channels: str, data: str = "x", client_id: str | None = None) -> Draft:
    """A plain draft to ``channels``, as the broker tests publish them."""
    return Draft(event="message", data=data, channels=channels, client_id=client_id)


def ids(messages: list[Message]) -> list[int]:
    return [message.id for message in messages]


def new_broker(kind: BrokerKind, settings: Settings, instance_id: str, linger_seconds: float | None = None) -> Broker:
    """A broker of ``kind``, not started; ``linger_seconds`` for the Redis ones (else their default)."""
    if kind == "memory":
        return MemoryBroker.from_settings(settings)
    linger = {} if linger_seconds is None else {"linger_seconds": linger_seconds}
    if kind == "redis":
        return RedisBroker(settings, instance_id, **linger)
    if kind == "redis-cluster":
        return RedisClusterBroker(settings, instance_id, **linger)
    return ShardedClusterBroker(settings, instance_id, **linger)


AnyBroker = TypeVar("AnyBroker", bound=Broker)


class StartedBrokers:
    """The brokers a fixture started, each with the list its ``deliver`` appends to."""

    def __init__(self) -> None:
        self.brokers: list[Broker] = []

    async def start(self, broker: AnyBroker) -> tuple[AnyBroker, list[Message]]:
        delivered: list[Message] = []
        self.brokers.append(broker)  # before start(): a broker that failed half-way is stopped too
        await broker.start(delivered.append)
        return broker, delivered

    async def stop(self) -> None:
        for broker in self.brokers:
            await broker.stop()
