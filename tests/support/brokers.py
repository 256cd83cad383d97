"""Brokers without the app: the kinds a test can ask for (``memory``, ``redis``,
``redis-cluster`` in one-slot mode, ``sharded``), the settings and environment that name
each, a plain draft, and what the ``start_broker`` fixture uses to start and stop them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import pytest

from sse_hub.broker.local import LocalDirectory, MemoryTickets
from sse_hub.broker.memory import MemoryBroker
from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.one_slot import RedisClusterBroker
from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.config.settings import Settings
from sse_hub.messages.contract import Backend, Broker, ClientDirectory, Summary, TicketStore
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


def new_backend(
    kind: BrokerKind,
    settings: Settings,
    instance_id: str,
    linger_seconds: float | None = None,
    describe: Callable[[], Summary] | None = None,
) -> Backend:
    """A broker of ``kind``, not started, with its directory and tickets (as the app's
    ``create_backend``); ``linger_seconds`` and ``describe`` for the Redis ones."""
    if kind == "memory":
        return Backend(
            MemoryBroker.from_settings(settings), LocalDirectory(), MemoryTickets(settings.limits.max_tickets)
        )
    options: dict[str, Any] = {"describe": describe}
    if linger_seconds is not None:
        options["linger_seconds"] = linger_seconds
    broker: RedisBroker | ShardedClusterBroker
    if kind == "redis":
        broker = RedisBroker(settings, instance_id, **options)
    elif kind == "redis-cluster":
        broker = RedisClusterBroker(settings, instance_id, **options)
    else:
        broker = ShardedClusterBroker(settings, instance_id, **options)
    return Backend(broker, broker.directory, broker.tickets)


class StartedBrokers:
    """The brokers a fixture started, each with the list its ``deliver`` appends to, and
    the directory and tickets created with each (``backend``)."""

    def __init__(self) -> None:
        self.brokers: list[Broker] = []
        self.backends: dict[Broker, Backend] = {}

    async def start(self, backend: Backend) -> tuple[Broker, list[Message]]:
        delivered: list[Message] = []
        broker = backend.broker
        self.brokers.append(broker)  # before start(): a broker that failed half-way is stopped too
        self.backends[broker] = backend
        await broker.start(delivered.append)
        return broker, delivered

    def directory(self, broker: Broker) -> ClientDirectory:
        return self.backends[broker].directory

    def tickets(self, broker: Broker) -> TicketStore:
        return self.backends[broker].tickets

    async def stop(self) -> None:
        for broker in self.brokers:
            await broker.stop()
