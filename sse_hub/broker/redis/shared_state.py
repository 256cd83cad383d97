"""The Broker methods on what the instances share in Redis: the client directory and the
tickets, written once for both Redis brokers (``RedisBroker``, ``ShardedClusterBroker``).

A broker mixes ``SharedState`` in before its ``Broker`` base and sets ``directory``,
``tickets`` and ``store`` (the name its errors give the store: "Redis", "Redis Cluster").

Invariants:

1. ``client_connected``/``client_disconnected`` never await (``directory``, invariant 1).
2. A question Redis cannot answer is ``BrokerUnavailable`` (``errors.unavailable``);
   ``_refuse_if_disconnected`` may refuse it sooner, while the broker knows it is cut off.
"""

from __future__ import annotations

from typing import ClassVar

from sse_hub.broker.redis.directory import Directory
from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.tickets import Tickets

__all__ = ["SharedState"]


class SharedState:
    """See the module docstring."""

    directory: Directory
    tickets: Tickets
    store: ClassVar[str]

    def _refuse_if_disconnected(self) -> None:
        """Raise ``BrokerUnavailable`` instead of asking a store known to be out of reach
        (default: always ask)."""

    async def client_exists(self, client_id: str) -> bool:
        if client_id in self.directory.clients:
            return True
        self._refuse_if_disconnected()
        with unavailable(f"cannot look the client up in {self.store}"):
            return await self.directory.locate(client_id) is not None

    async def cluster_summaries(self) -> list[dict[str, object]] | None:
        self._refuse_if_disconnected()
        with unavailable(f"cannot read the cluster from {self.store}"):
            return await self.directory.summaries()

    async def issue_ticket(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None:
        await self.tickets.issue(ticket, patterns, ttl_seconds)

    async def redeem_ticket(self, ticket: str) -> tuple[str, ...] | None:
        return await self.tickets.redeem(ticket)

    def client_connected(self, client_id: str) -> None:
        self.directory.client_connected(client_id)

    def client_disconnected(self, client_id: str) -> None:
        self.directory.client_disconnected(client_id)
