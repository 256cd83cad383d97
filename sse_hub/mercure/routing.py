"""How Mercure updates ride on the hub's channels: one internal feed channel.

Every Mercure update is published to ``FEED_CHANNEL``. It holds the Mercure history (one
hub-wide cursor, as Mercure wants), and every Mercure subscriber receives it and filters
locally (``MercureIndex``, ``selectors.should_deliver``). ``~`` is outside the user channel
alphabet (``config.CHANNEL_PATTERN``), so no user can publish or subscribe to it by name.

Invariant: a Mercure update is stored and routed under ``FEED_CHANNEL`` only; per-topic
routing (an instance receiving only the topics it serves) is not built (docs/mercure.md).
"""

from __future__ import annotations

FEED_CHANNEL = "~mercure"
