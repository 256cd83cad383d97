"""The Mercure feed channel and the routing names: outside the user channel namespace."""

from __future__ import annotations

from sse_hub.config.settings import CHANNEL_PATTERN
from sse_hub.messages.mercure import FEED_CHANNEL, MAX_SELECTOR_CHARS, history_channel, route_channel


def test_the_feed_is_outside_the_user_namespace() -> None:
    assert CHANNEL_PATTERN.fullmatch(FEED_CHANNEL) is None


def test_a_routing_name_is_short_whatever_the_topic_and_outside_the_user_namespace() -> None:
    topics = ("https://example.com/a", "https://example.com/b", "x" * MAX_SELECTOR_CHARS)
    names = {route_channel(topic) for topic in topics}
    assert len(names) == 3
    assert all(CHANNEL_PATTERN.fullmatch(name) is None and len(name) == len("~mercure:") + 32 for name in names)


def test_what_came_on_a_routing_name_is_in_the_feeds_history() -> None:
    assert history_channel(route_channel("https://example.com/a")) == FEED_CHANNEL
    assert history_channel("news") == "news"
