"""How Mercure updates ride on the hub's channels: internal channel names for topics.

The hub routes messages by channel (and, on Redis, each instance receives only the
channels it has streams for). Mercure topics are arbitrary IRIs of any length, in their
own namespace beside the user's channels, so each maps to an internal channel name:

- ``topic_channel(topic)``: ``~t/`` and 24 characters of the topic's SHA-256 (base64url).
  ``~`` is outside the user channel alphabet (``config.CHANNEL_PATTERN``), so no user can
  publish or subscribe to these names; the hash bounds the key length whatever the topic.
- ``FEED_CHANNEL``: every Mercure update is also published here. It holds the Mercure
  history (one hub-wide cursor, as Mercure wants), and subscriptions that cannot be routed
  by name (``*``, URI templates, URL patterns) receive it and filter locally.

An update's channels are its topics' channels plus the feed; a subscription listens on its
exact topics' channels when it has only exact selectors, else on the feed alone. Whatever
the route, the per-subscriber filter (``selectors.should_deliver``) decides delivery: a
channel name is a routing hint, never an authorization (a hash collision would only route
an update to an instance that then drops it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from sse_hub.mercure.selectors import SelectorSet

TOPIC_CHANNEL_PREFIX = "~t/"
FEED_CHANNEL = "~mercure"


def topic_channel(topic: str) -> str:
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).digest()[:18]
    return TOPIC_CHANNEL_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def update_channels(topics: Iterable[str]) -> tuple[str, ...]:
    """The channels an update is published to: one per distinct topic, then the feed."""
    return (*dict.fromkeys(topic_channel(topic) for topic in topics), FEED_CHANNEL)


def subscription_channels(subscription: SelectorSet) -> tuple[str, ...]:
    """The channels a subscription listens on (what ``Broker.attach`` is given)."""
    if subscription.has_patterns:
        return (FEED_CHANNEL,)
    return tuple(sorted(topic_channel(topic) for topic in subscription.exact_topics))


def is_mercure_channel(channel: str) -> bool:
    return channel == FEED_CHANNEL or channel.startswith(TOPIC_CHANNEL_PREFIX)
