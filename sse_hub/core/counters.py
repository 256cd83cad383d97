"""Hub-wide counters, kept per message or per connection, never per delivery.

Invariant: ``messages_delivered`` is the sum of every client's ``messages_sent``, open or
gone (live and replayed messages alike), so the hub-wide and per-client figures agree
(docs/api.md, /stats): the hub adds a client's count to ``delivered_to_departed`` when it
releases the client, and the rest is summed over the registry when read.
"""

from __future__ import annotations

from sse_hub.core.registry import Registry


class Counters:
    """Hub-wide counters, kept per message or per connection, never per delivery.

    ``messages_delivered`` is the sum of every client's ``messages_sent``, open or gone
    (live and replayed messages alike), so the hub-wide and per-client figures agree.
    """

    __slots__ = (
        "_registry",
        "connects",
        "delivered_to_departed",
        "disconnects",
        "messages_published",
        "publish_errors",
        "replays",
        "resets",
        "slow_disconnects",
    )

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.connects = 0
        self.disconnects: dict[str, int] = {}  # by close reason: disconnected, slow, kicked, shutdown
        self.messages_published = 0
        self.publish_errors = 0  # publishes the broker refused as unavailable (503 broker_unavailable)
        self.delivered_to_departed = 0
        self.slow_disconnects = 0
        self.replays = 0
        self.resets = 0

    @property
    def messages_delivered(self) -> int:
        return self.delivered_to_departed + sum(subscriber.messages_sent for subscriber in self._registry.all())
